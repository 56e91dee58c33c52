"""CUDA checks (skipped without a GPU): fp16 pipelines stay exact when inert, reuse and stay close when accelerated,
and diffskip composes with diffusers' model / sequential CPU offload and group offloading with streams."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._pytree import tree_leaves

import diffskip
from diffskip.engine.hooks import hooked
from diffskip.testing import tiny_pipeline

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

# dB to the plain output. On CPU in float32 these pipelines gave 24.8 (pixart) to 57 dB (flux) with
# interval:every=2 or threshold:target=0.5 at 6 steps, and 13-14 dB between two seeds: 20 dB separates them.
MIN_PSNR = 20.0
DENOISER = {"sd": "unet", "pixart": "transformer", "flux": "transformer"}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def _run(p, kind: str, **kw) -> np.ndarray:
    extra = {"use_resolution_binning": False, "clean_caption": False} if kind == "pixart" else {}
    return p("a red shoe", num_inference_steps=6, height=16, width=16, output_type="np",
             generator=torch.Generator("cuda").manual_seed(0), **extra, **kw).images


def _assert_reuses_and_close(fast, out: np.ndarray, base: np.ndarray) -> None:
    st = fast.last_stats
    assert st.reused > 0 and st.computed < st.computed + st.reused  # some unit evaluations were replayed
    assert st.flops_fraction is not None and st.flops_fraction < 1.0
    assert np.isfinite(out).all() and _psnr(out, base) >= MIN_PSNR


@pytest.mark.parametrize("policy", ["interval:every=2", "threshold:target=0.5"])
@pytest.mark.parametrize("kind", ["sd", "pixart", "flux"])
def test_fp16_cuda_never_exact_policies_reuse_and_stay_close(kind, policy):
    pipe = tiny_pipeline(kind).to("cuda", torch.float16)
    base = _run(pipe, kind)
    assert (_run(diffskip.DiffSkipPipeline.from_pipe(pipe, "never"), kind) == base).all()
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, policy)
    out = _run(fast, kind)
    _assert_reuses_and_close(fast, out, base)
    assert (_run(pipe, kind) == base).all()  # the wrapped pipeline stays unaccelerated


def _offload(pipe, kind: str, how: str) -> None:
    if how == "model":
        pipe.enable_model_cpu_offload()
    elif how == "sequential":
        pipe.enable_sequential_cpu_offload()
    else:  # group offloading of the denoiser, one block per group, prefetched on a side stream
        pipe.to("cuda")
        getattr(pipe, DENOISER[kind]).enable_group_offload(
            onload_device=torch.device("cuda"), offload_device=torch.device("cpu"), offload_type="block_level",
            num_blocks_per_group=1, use_stream=True)


def _cache_devices(fast):
    """A step-end callback recording the devices of every tensor the session caches."""
    seen: set[str] = set()

    def callback(pipe, i, t, kwargs):
        s = hooked(fast.denoiser).session
        for br in s.branches.values():
            seen.update(x.device.type for x in tree_leaves(br.cache.values) if isinstance(x, torch.Tensor))
        return kwargs
    return seen, callback


@pytest.mark.parametrize("how", ["model", "sequential", "group_stream"])
@pytest.mark.parametrize("kind", ["sd", "flux"])
def test_offloading_with_diffskip_caches_on_the_execution_device(kind, how):
    pipe = tiny_pipeline(kind).to(torch.float16)
    _offload(pipe, kind, how)
    base = _run(pipe, kind)
    assert (_run(diffskip.DiffSkipPipeline.from_pipe(pipe, "never"), kind) == base).all()
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "interval:every=2")
    seen, callback = _cache_devices(fast)
    out = _run(fast, kind, callback_on_step_end=callback)
    assert seen == {"cuda"}  # caches live where the units ran, not on the offload device
    _assert_reuses_and_close(fast, out, base)
    assert (_run(pipe, kind) == base).all()
