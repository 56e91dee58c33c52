"""Context parallelism: drift-gated decisions agree across ranks that each hold a shard of the tokens (gloo, CPU).

Each of 2 processes feeds its half of the same tokens to the same per-token model (a block acts on each token
alone, so a rank's probe is exactly its shard of the full probe, as it is under diffusers' context parallelism).
Then tiny Flux and Wan transformers run under diffusers' own `enable_parallelism(ContextParallelConfig(
ulysses_degree=2))` on the gloo group: on a CPU-only machine that works once `torch.accelerator.device_count`
answers 1 (diffusers takes the rank modulo it), patched in the spawned workers only.
"""
from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import diffskip
from diffskip.adapters import Adapter
from diffskip.errors import SessionError

WORLD = 2
TOKENS, DIM, STEPS = 8, 8, 10
THRESHOLD = "threshold:threshold=0.5,warmup=1,final=0"
STATIC = ["never", "interval:every=2,final=0", "uniform:speedup=1.5,final=0", "mask:steps=1101001101,final=0"]


class TokenBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(DIM, DIM)

    def forward(self, x):
        return x + torch.tanh(self.lin(x))  # (B, L, D), token by token


class TokenNet(nn.Module):
    """A denoiser whose every block acts on each token alone: a shard of tokens gives a shard of each output."""

    def __init__(self, depth: int = 4):
        super().__init__()
        self.blocks = nn.ModuleList(TokenBlock() for _ in range(depth))

    def forward(self, x, t):
        x = x + float(t) / 1000
        for blk in self.blocks:
            x = blk(x)
        return x


def _net() -> TokenNet:
    diffskip.register(TokenNet, units=["blocks"], reuse="residual", streams="x", timestep="t")
    torch.manual_seed(0)
    return diffskip.attach(TokenNet())


def _latents() -> list[torch.Tensor]:
    """Per step: (2, TOKENS, DIM). Sample 0's first half of tokens moves fast, its second half slowly; sample 1
    the other way round, so each rank's shard alone drifts differently from the full tensor."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(2, TOKENS, DIM, generator=g)
    speed = torch.full((2, TOKENS, 1), 0.02)
    speed[0, : TOKENS // 2] = speed[1, TOKENS // 2:] = 0.4
    return [base + speed * torch.randn(2, TOKENS, DIM, generator=g) for _ in range(STEPS)]


def _decisions(net, policy, xs, **kw) -> list[list[int]]:
    """Run the steps; return (computed, reused) per call."""
    with torch.no_grad(), diffskip.session(net, policy, num_steps=STEPS, **kw) as s:
        for k, x in enumerate(xs):
            net(x, 900.0 - 10 * k)
    return [[c.computed, c.reused] for c in s.stats.calls]


def _count_all_reduce(fn):
    calls = []
    real = dist.all_reduce

    def counting(*a, **k):
        calls.append(a[0].shape)
        return real(*a, **k)
    dist.all_reduce = counting
    try:
        out = fn()
    finally:
        dist.all_reduce = real
    return out, len(calls)


def _diffusers_group(rank: int):
    """Record diffusers' own parallel config on a model, as enable_parallelism does (minus the CUDA device)."""
    from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig
    mesh = dist.device_mesh.init_device_mesh("cpu", (1, WORLD), mesh_dim_names=("ring", "ulysses"))
    cfg = ParallelConfig(context_parallel_config=ContextParallelConfig(ulysses_degree=WORLD))
    cfg.setup(rank, WORLD, torch.device("cpu"), mesh=mesh)
    return cfg


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=120))  # diverging collectives raise instead of hanging
    try:
        net, half = _net(), TOKENS // WORLD
        shard = [x[:, rank * half:(rank + 1) * half] for x in _latents()]
        res = {}
        res["group"], res["group_reduces"] = _count_all_reduce(
            lambda: _decisions(net, THRESHOLD, shard, group=dist.group.WORLD))
        res["alone"] = _decisions(net, THRESHOLD, shard)
        res["static_reduces"] = [_count_all_reduce(lambda: _decisions(net, p, shard, group=dist.group.WORLD))[1]
                                 for p in STATIC]
        net._parallel_config = _diffusers_group(rank)
        res["auto"], res["auto_reduces"] = _count_all_reduce(lambda: _decisions(net, THRESHOLD, shard))
        torch.accelerator.device_count = lambda: 1  # diffusers' _resolve_parallel_config: rank % device count
        for kind, policy in DIT_RUNS:
            res[f"{kind} {policy}"] = _dit_run(kind, policy, parallel=True)
        res["pipeline"] = _pipeline_run(parallel=True)
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


DIT_RUNS = [("flux", "threshold:target=0.5,final=0"), ("wan", "interval:every=2,final=0"),
            ("wan", "threshold:target=0.5,final=0")]


def _dit(kind: str):
    """A tiny Flux or Wan transformer and one sample's inputs (token counts even, for 2 ranks)."""
    import diffusers as d
    torch.manual_seed(0)
    if kind == "flux":
        m = d.FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2,
                                     attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                     pooled_projection_dim=32, axes_dims_rope=(4, 4, 8)).eval()
        ids = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(-1, 2)
        kw = dict(encoder_hidden_states=torch.randn(1, 8, 32), pooled_projections=torch.randn(1, 32),
                  img_ids=torch.cat([torch.zeros(16, 1), ids], 1), txt_ids=torch.zeros(8, 3))
        return m, torch.randn(1, 16, 16), kw, 1.0, None
    m = d.WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=16,
                                out_channels=16, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=3,
                                cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32).eval()
    wan = Adapter(units=("blocks",), reuse="residual", streams="hidden_states")  # no built-in Wan adapter yet
    return m, torch.randn(1, 16, 2, 8, 8), dict(encoder_hidden_states=torch.randn(1, 8, 16)), 999.0, wan


def _dit_run(kind: str, policy: str, parallel: bool) -> dict:
    """Denoise STEPS steps; return decisions, output, tokens the last unit saw and diffskip's all-reduces."""
    from diffusers import ContextParallelConfig
    m, x, kw, t_max, adapter = _dit(kind)
    if parallel:
        m.enable_parallelism(config=ContextParallelConfig(ulysses_degree=WORLD))
    diffskip.attach(m, adapter)
    seen = []
    last = diffskip.engine.hooks.hooked(m).units[-1].module
    last.register_forward_pre_hook(lambda _, a, k: seen.append((a[0] if a else k["hidden_states"]).shape[1]),
                                   with_kwargs=True)

    def run():
        with torch.no_grad(), diffskip.session(m, policy, num_steps=STEPS) as s:
            y = x
            for k in range(STEPS):
                y = y - m(y, timestep=torch.full((1,), t_max * (1 - k / STEPS)), **kw, return_dict=False)[0] / STEPS
        return [[c.computed, c.reused] for c in s.stats.calls], y.flatten().tolist()
    try:
        (dec, out), n = _count_all_reduce(run)
    except RuntimeError as e:
        return {"error": str(e).splitlines()[0]}
    return {"decisions": dec, "out": out, "tokens": max(seen), "reduces": n}


def _pipeline_run(parallel: bool) -> dict:
    """A tiny FluxPipeline wrapped by DiffSkipPipeline (threshold), its transformer context-parallel or not."""
    from diffusers import ContextParallelConfig

    from diffskip.testing import tiny_pipeline
    pipe = tiny_pipeline("flux")
    if parallel:
        pipe.transformer.enable_parallelism(config=ContextParallelConfig(ulysses_degree=WORLD))
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "threshold:target=0.5")
    img = fast("a red shoe", num_inference_steps=6, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    return {"decisions": [[c.computed, c.reused] for c in fast.last_stats.calls], "image": img.flatten().tolist()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def full():
    """The single-process decisions on the full tensor."""
    return _decisions(_net(), THRESHOLD, _latents())


def test_the_group_makes_every_rank_decide_as_the_full_tensor_does(ranks, full):
    assert ranks[0]["group"] == ranks[1]["group"] == full
    computed = sum(c for c, _ in full)
    reused = sum(r for _, r in full)
    assert reused > 0 and computed > 3 * 2  # the plan mixes computing and reusing (step 0: 3 units x 2 samples)


def test_without_the_group_the_shards_disagree(ranks, full):
    assert ranks[0]["alone"] != ranks[1]["alone"]  # what the group prevents: diverging collectives
    assert full not in (ranks[0]["alone"], ranks[1]["alone"])


def test_one_small_collective_per_step_and_none_for_input_independent_policies(ranks):
    for r in ranks:
        assert r["group_reduces"] == STEPS - 1  # step 0 has no previous probe to compare with
        assert r["static_reduces"] == [0] * len(STATIC)


def test_diffusers_parallel_config_is_found_on_the_model(ranks, full):
    assert ranks[0]["auto"] == ranks[1]["auto"] == full
    assert ranks[0]["auto_reduces"] == STEPS - 1


def test_a_group_without_an_initialised_job_raises():
    net = _net()
    with pytest.raises(SessionError, match="torch.distributed is not initialized"):
        with diffskip.session(net, THRESHOLD, num_steps=STEPS, group=object()):
            pass


@pytest.mark.parametrize("kind, policy", DIT_RUNS[:2])
def test_diffusers_context_parallel_dit_decides_as_one_process(ranks, kind, policy):
    one = _dit_run(kind, policy, parallel=False)
    r0, r1 = (r[f"{kind} {policy}"] for r in ranks)
    assert r0["decisions"] == r1["decisions"] == one["decisions"]
    assert sum(r for _, r in one["decisions"]) > 0  # something was reused
    assert r0["tokens"] == r1["tokens"] == one["tokens"] // WORLD  # the units really ran on a shard
    assert r0["reduces"] == (STEPS - 1 if policy.startswith("threshold") else 0)
    assert torch.allclose(torch.tensor(r0["out"]), torch.tensor(one["out"]), atol=1e-5)
    assert r0["out"] == r1["out"]


def test_diffskip_pipeline_under_context_parallelism_matches_one_process(ranks):
    one = _pipeline_run(parallel=False)
    r0, r1 = ranks[0]["pipeline"], ranks[1]["pipeline"]
    assert r0["decisions"] == r1["decisions"] == one["decisions"]
    assert sum(r for _, r in one["decisions"]) > 0
    assert torch.allclose(torch.tensor(r0["image"]), torch.tensor(one["image"]), atol=1e-5)


def test_wan_threshold_under_context_parallelism(ranks):
    # Wan's _cp_plan splits the tokens inside blocks.0, the drift probe: its residual cannot be taken (the shard it
    # returns is shorter than the input it got), so the probe measures its output, reduced across the ranks
    r0, r1 = ranks[0]["wan threshold:target=0.5,final=0"], ranks[1]["wan threshold:target=0.5,final=0"]
    assert "error" not in r0 and "error" not in r1, (r0.get("error"), r1.get("error"))
    assert r0["decisions"] == r1["decisions"] and sum(r for _, r in r0["decisions"]) > 0
