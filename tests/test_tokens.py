"""Token-level partial compute (policy tokens=): exact at 0 and 1, in between otherwise, refused where unsound."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import diffskip
from diffskip.adapters import registered
from diffskip.errors import PolicyError, SessionError
from models import build, denoise

STEPS = 8


def run(kind: str, spec: str):
    """Denoise a tiny model of `kind` under `spec`; return (output, stats)."""
    m = build(kind)
    diffskip.attach(m)
    with diffskip.session(m, spec, num_steps=STEPS) as s:
        out = denoise(m, kind, steps=STEPS)
    return out, s.stats


@pytest.fixture(scope="module")
def pixart():
    return {spec: run("pixart", spec) for spec in
            ("never", "interval:every=3", "interval:every=3,tokens=0.5", "interval:every=3,tokens=1.0")}


def test_spec_parses_and_prints():
    p = diffskip.parse("interval:every=3,tokens=0.25")
    assert p.tokens == 0.25 and str(p) == "interval:every=3,tokens=0.25"
    assert diffskip.parse(str(p)) == p
    assert str(diffskip.parse("interval:every=3,tokens=0")) == "interval:every=3"  # the default is not printed
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(PolicyError, match="tokens"):
            diffskip.parse(f"interval:tokens={bad}")


def test_tokens_one_equals_computing(pixart):
    out, stats = pixart["interval:every=3,tokens=1.0"]
    ref, ref_stats = pixart["never"]
    assert torch.equal(out, ref)
    assert stats.flops_fraction == pytest.approx(ref_stats.flops_fraction, rel=1e-9)


def test_tokens_zero_is_plain_replay():
    out0, s0 = run("pixart", "interval:every=3,tokens=0")
    out, s = run("pixart", "interval:every=3")
    assert torch.equal(out0, out) and s0.flops_fraction == s.flops_fraction


def test_fraction_lands_between(pixart):
    out, stats = pixart["interval:every=3,tokens=0.5"]
    plain, plain_stats = pixart["interval:every=3"]
    ref, _ = pixart["never"]
    assert plain_stats.flops_fraction < stats.flops_fraction < 1.0
    assert not torch.equal(out, plain) and not torch.equal(out, ref)
    assert torch.isfinite(out).all()


def test_flops_linear_in_tokens(pixart):
    """Replaying steps count the span's FLOPs times the token fraction (16 tokens: 8 compute at 0.5)."""
    half = pixart["interval:every=3,tokens=0.5"][1].flops_fraction
    plain = pixart["interval:every=3"][1].flops_fraction
    assert half == pytest.approx((plain + 1.0) / 2, rel=1e-9)


def test_per_unit_policy_tokens_one_equals_computing():
    out, _ = run("pixart", "uniform:speedup=2,tokens=1.0")
    ref, _ = run("pixart", "never")
    assert torch.equal(out, ref)


@pytest.mark.parametrize("kind,match", [("unet-sd", "replay their outputs"), ("flux", "two streams"),
                                        ("sd3", "two streams")])
def test_refused_at_session_start(kind, match):
    m = build(kind)
    diffskip.attach(m)
    denoise(m, kind, steps=1)  # detect / bind the units
    with pytest.raises(PolicyError, match=match):
        with diffskip.session(m, "interval:every=2,tokens=0.5", num_steps=STEPS):
            pass


class PosBlock(nn.Module):
    """A block that adds a per-token positional table (as rotary embeddings would enter attention)."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.lin = nn.Linear(d, d).requires_grad_(False)

    def forward(self, hidden_states, pos):
        return hidden_states + torch.tanh(self.lin(hidden_states + pos))


class PosNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(PosBlock() for _ in range(3))
        self.register_buffer("pos", torch.randn(1, 6, 8))

    def forward(self, hidden_states, timestep):
        pos = self.pos.expand(hidden_states.shape[0], -1, -1)
        for b in self.blocks:
            hidden_states = b(hidden_states, pos)
        return hidden_states


def test_per_token_argument_refused():
    torch.manual_seed(0)
    m = PosNet()
    with registered(PosNet, units=("blocks",), reuse="residual", streams="hidden_states"):
        diffskip.attach(m)
        x = torch.randn(2, 6, 8)
        with pytest.raises(SessionError, match="argument 'pos'.*token count"):
            with diffskip.session(m, "interval:every=2,tokens=0.5,final=0", num_steps=4), torch.no_grad():
                for t in (900.0, 600.0, 300.0):
                    x = m(x, torch.tensor([t, t]))


def test_grid_convolution_refused():
    """Sana's blocks reshape their tokens to the latent grid (a convolution in the feed-forward): refused."""
    m = build("sana")
    diffskip.attach(m)
    with pytest.raises(SessionError, match="failed on 32 of 64 tokens.*interact only through attention"):
        with diffskip.session(m, "interval:every=2,tokens=0.5", num_steps=6):
            denoise(m, "sana", steps=6)


def test_tokens_and_cfg_do_not_combine_yet():
    with pytest.raises(diffskip.errors.PolicyError, match=r"tokens=0.5 is invalid; allowed: 0 with cfg > 1"):
        diffskip.parse("interval:every=3,cfg=2,tokens=0.5")
    assert diffskip.parse("interval:every=3,cfg=2").cfg == 2 and diffskip.parse("interval:tokens=0.5").tokens == 0.5
