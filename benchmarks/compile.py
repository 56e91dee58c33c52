"""torch.compile under a diffskip session on the tiny pipelines: graph breaks, graphs, exactness (and, on a
GPU, inductor speed-up against the FLOP ratio and device syncs per step).

    python -m benchmarks.compile --backend eager            # CPU: breaks, graphs, max |diff| vs eager session
    python -m benchmarks.compile --backend inductor --device cuda   # GPU: adds timings and syncs per step
"""
from __future__ import annotations

import argparse
import time

import torch
import torch._dynamo as dynamo
from torch._dynamo.utils import counters

import diffskip
from diffskip.engine.hooks import hooked
from diffskip.testing import tiny_pipeline


def _run(kind: str, pipe, steps: int, device: str):
    kw = dict(prompt="a red shoe", height=16, width=16, num_inference_steps=steps, output_type="np",
              generator=torch.Generator(device).manual_seed(0))
    if kind == "pixart":
        kw.update(use_resolution_binning=False, clean_caption=False)
    return pipe(**kw).images


def _explain(kind: str, fast, device: str) -> int:
    """Graph breaks dynamo reports for one denoiser call with the session active (explain on its forward)."""
    h = hooked(fast.denoiser)
    calls = []
    handle = fast.denoiser.register_forward_pre_hook(lambda m, a, k: calls.append((a, k)), with_kwargs=True)
    _run(kind, fast, 2, device)
    handle.remove()
    args, kwargs = calls[-1]
    with diffskip.session(fast.denoiser, fast.policy):
        out = dynamo.explain(type(h.model).forward)(h.model, *args, **kwargs)
    return out.graph_break_count


def measure(kind: str, policy: str, backend: str, steps: int, device: str) -> dict:
    """Return breaks, graphs and exactness of per-unit and whole-denoiser compile for one tiny pipeline."""
    row: dict = {"pipeline": kind, "policy": policy}
    fast = diffskip.DiffSkipPipeline(tiny_pipeline(kind).to(device), policy)
    ref = _run(kind, fast, steps, device)
    row["whole_explain_breaks"] = _explain(kind, fast, device)
    dynamo.reset()
    counters.clear()
    for u in hooked(fast.denoiser).units:
        u.module.compile(fullgraph=True, backend=backend)
    out = _run(kind, fast, steps, device)
    row.update(units=len(hooked(fast.denoiser).units), unit_graphs=counters["stats"]["unique_graphs"],
               unit_breaks=sum(counters["graph_break"].values()), unit_max_diff=float(abs(out - ref).max()))
    if device == "cuda":
        row.update(_timing(kind, fast, steps, device))
    return row


def _timing(kind: str, fast, steps: int, device: str) -> dict:
    """Median seconds of the compiled accelerated run, and device syncs counted with the sync debug mode."""
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        _run(kind, fast, steps, device)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    torch.cuda.set_sync_debug_mode("warn")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(kind, fast, steps, device)
    torch.cuda.set_sync_debug_mode(0)
    return {"seconds": sorted(times)[2], "flops_fraction": fast.last_stats.flops_fraction,
            "syncs_per_step": len(caught) / steps}


def main(argv: list[str] | None = None) -> None:
    """Print one row per tiny pipeline."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.compile", description=__doc__)
    p.add_argument("--backend", default="eager")
    p.add_argument("--device", default="cpu")
    p.add_argument("--policy", default="interval:every=2")
    p.add_argument("--steps", type=int, default=6)
    args = p.parse_args(argv)
    for kind in ("pixart", "sd"):
        print(measure(kind, args.policy, args.backend, args.steps, args.device))


if __name__ == "__main__":
    main()
