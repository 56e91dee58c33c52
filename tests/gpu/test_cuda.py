"""CUDA checks (skipped without a GPU): fp16 pipelines stay exact when inert and reuse when accelerated."""
import pytest
import torch

import diffskip
from diffskip.testing import tiny_pipeline

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("kind", ["sd", "pixart", "flux"])
def test_fp16_cuda_never_exact_interval_reuses(kind):
    pipe = tiny_pipeline(kind).to("cuda", torch.float16)
    extra = {"use_resolution_binning": False, "clean_caption": False} if kind == "pixart" else {}

    def run(p):
        return p("a red shoe", num_inference_steps=6, height=16, width=16, output_type="np",
                 generator=torch.Generator("cuda").manual_seed(0), **extra).images

    base = run(pipe)
    assert (run(diffskip.DiffSkipPipeline.from_pipe(pipe, "never")) == base).all()
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "threshold:threshold=0.05")
    out = run(fast)
    assert fast.last_stats.flops_fraction <= 1.0 and out.shape == base.shape
    assert (run(pipe) == base).all()
