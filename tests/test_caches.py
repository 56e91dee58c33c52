"""Lean caches: what a session keeps between steps (one summed residual per span, only outputs live code reads)."""
import dataclasses
from typing import ClassVar

import pytest
import torch

import diffskip
from diffskip.engine import hooked
from diffskip.errors import SessionError
from models import build, denoise, inputs


@dataclasses.dataclass(frozen=True)
class PerUnitInterval(diffskip.Interval):
    """Interval with the per-unit cache (every unit keeps its own value): the reference the lean caches match."""

    per_unit: ClassVar[bool] = True


def _run(kind, policy):
    torch.manual_seed(0)
    model = diffskip.attach(build(kind))
    with diffskip.session(model, policy, num_steps=6) as s:
        out = denoise(model, kind, b=2, steps=6)
        kept = {k: len(b.cache.values) for k, b in s.branches.items()}
    return out, s.stats, kept


@pytest.mark.parametrize("kind", ["pixart", "flux", "sd3", "unet-sd", "unet-sdxl"])
def test_lean_cache_gives_the_per_unit_result_from_a_fraction_of_the_memory(kind):
    lean, st, kept = _run(kind, diffskip.Interval(every=3))
    ref, st_ref, kept_ref = _run(kind, PerUnitInterval(every=3))
    assert (st.computed, st.reused) == (st_ref.computed, st_ref.reused) and st.reused > 0
    if kind.startswith("unet"):  # the same values reach live code; the others were never read
        assert torch.equal(lean, ref)
    else:  # one summed residual instead of one per block: equal up to the order of the additions
        assert torch.allclose(lean, ref, rtol=1e-4, atol=1e-5)
    assert kept[0] < kept_ref[0] / 2 and st.cache_bytes < st_ref.cache_bytes / 2


def test_unet_keeps_only_the_outputs_its_live_layers_read():
    torch.manual_seed(0)
    model = diffskip.attach(build("unet-sd"))
    with diffskip.session(model, "interval:every=3,forecast=0", num_steps=6) as s:
        denoise(model, "unet-sd", b=1, steps=2)
        units = len(hooked(model).units)
        assert s.reads is not None and 1 <= len(s.reads) <= 2  # the live last up layers read one or two
        assert set(s.branches[0].cache.values) == set(s.reads)
        assert len(s.branches[0].skeletons) == units - 2 - len(s.reads)  # tail=2 live; the rest keep a shape


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "4"])
def test_session_num_steps_must_be_a_positive_int(bad):
    model = diffskip.attach(build("pixart"))
    with pytest.raises(SessionError, match=f"num_steps={bad!r} is invalid; allowed"):
        with diffskip.session(model, "interval:every=2", num_steps=bad):
            pass


def test_a_run_longer_than_num_steps_is_refused():
    model = diffskip.attach(build("pixart"))
    x, kw = inputs("pixart", 1)
    with pytest.raises(SessionError, match="reached denoiser step 3 but the session was given "
                                                           "num_steps=2"):
        with torch.no_grad(), diffskip.session(model, "interval:every=2", num_steps=2):
            for t in (900.0, 600.0, 300.0, 100.0):
                model(x, timestep=torch.tensor([t]), return_dict=False, **kw)
