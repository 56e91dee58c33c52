"""One prepared GPU benchmark: real-size random-weight denoisers, plain vs caching, eager vs regional compile.

    python -m benchmarks.gpu                                  # one A100/H100/H200, about 8 min: writes docs/gpu.md
    OMP_NUM_THREADS=1 python -m benchmarks.gpu --tiny --out /tmp/gpu.md   # tiny configs on CPU (the CPU test)

Models are built from their configs (no download): the SDXL UNet at 1024x1024, a FLUX.1-dev-size DiT at
1024x1024 and a Wan 2.1 1.3B-size video DiT at 480p x 33 frames, in bf16, batch 1, one guidance pass per step.
Each cell runs `--steps` denoiser calls on a fixed Euler-like loop. Wall-clock per step: CUDA events around a
whole run after one warm-up run, divided by the steps, median of `--repeats` runs. Peak memory:
`torch.cuda.max_memory_allocated` over the timed runs. FLOPs fraction and cache bytes: the session's stats.
Host-device syncs per step: one more run under `torch.cuda.set_sync_debug_mode("warn")`, counting its
warnings (on CPU, where nothing synchronises, the tensor reads to the host that would: item, tolist, bool,
float, int, numpy, counted by wrapping those methods during that run).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch._dynamo.utils import counters

import diffskip
from diffskip.adapters import Adapter
from diffskip.engine.hooks import hooked
from diffskip.errors import UnsupportedModelError

from .gpu_models import CASES, Case

POLICIES = ("plain", "interval:every=3", "threshold:target=0.5")
MODES = ("eager", "compile")
TARGETS = ("with compile, wall-clock speed-up >= 0.9 x FLOP speed-up; cache memory <= 10% of peak; "
           "no host-device sync per block: syncs per step <= 2 (diffskip's step clock reads the timestep once per "
           "call; a drift-gated policy reads its drift once per step), where a per-block sync would add one per unit")


@contextlib.contextmanager
def _host_reads() -> Any:
    """Count tensor reads to the host (item/tolist/bool/float/int/numpy): the calls that would synchronise with a
    device. The methods are wrapped for the block only (a TorchFunctionMode would be traced into compiled units)."""
    count = [0]
    saved = {n: getattr(torch.Tensor, n) for n in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy")}

    def counting(f):
        def read(*a, **k):
            count[0] += 1
            return f(*a, **k)
        return read
    for n, f in saved.items():
        setattr(torch.Tensor, n, counting(f))
    try:
        yield count
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def _denoise(case: Case, model, x0, kw, steps: int, policy: str):
    """Run `steps` denoiser calls from x0; return the session (None for plain)."""
    ctx = contextlib.nullcontext() if policy == "plain" else diffskip.session(model, policy, num_steps=steps)
    with torch.no_grad(), ctx as s:
        x, ts = x0, case.t_max * (1 - torch.arange(steps, device=x0.device) / steps)  # made once: no H2D per step
        for k in range(steps):
            x = x - case.call(model, x, ts[k:k + 1], kw) / steps
    return s


def _seconds(fn: Callable[[], Any], cuda: bool) -> float:
    if not cuda:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000


def _syncs(fn: Callable[[], Any], cuda: bool) -> tuple[Any, int]:
    """Run fn once; return its result and its host-device syncs: the CUDA sync debug mode's warnings (CPU: host
    reads of tensors)."""
    if not cuda:
        with _host_reads() as count:
            out = fn()
        return out, count[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return out, sum("synchroniz" in str(w.message) for w in caught)


def measure(case: Case, model, x0, kw, policy: str, steps: int, repeats: int) -> dict:
    """One cell: ms per step (median), peak memory, FLOPs fraction, cache bytes, syncs per step."""
    cuda = x0.is_cuda
    run = lambda: _denoise(case, model, x0, kw, steps, policy)  # noqa: E731
    run()  # warm-up: compile, FLOP measurement, lean-cache lineage
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = [_seconds(run, cuda) for _ in range(repeats)]
    peak = torch.cuda.max_memory_allocated() if cuda else None
    s, syncs = _syncs(run, cuda)
    st = None if s is None else s.stats
    return {"ms_step": 1000 * statistics.median(times) / steps, "peak_bytes": peak, "syncs_step": syncs / steps,
            "flops_fraction": 1.0 if st is None else st.flops_fraction,
            "cache_bytes": 0 if st is None else st.cache_bytes, "units": len(hooked(model).units),
            "computed": None if st is None else st.computed, "reused": None if st is None else st.reused}


def _build(case: Case, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Build the model with random weights straight in the run dtype (no float32 copy of 12B weights); attach."""
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = case.build().eval()
    finally:
        torch.set_default_dtype(default)
    try:
        return diffskip.attach(model)
    except UnsupportedModelError:  # no built-in adapter yet (Wan): the one diffskip's error message proposes
        if case.adapter is None:
            raise
        return diffskip.attach(model, Adapter(**case.adapter))


def _cell(case: Case, model, x0, kw, mode: str, policy: str, args) -> dict:
    """One row; a cell that raises is recorded with its error (the other cells still run)."""
    row = {"model": case.name, "mode": mode, "policy": policy}
    graphs = counters["stats"]["unique_graphs"]
    try:
        row.update(measure(case, model, x0, kw, policy, args.steps, args.repeats))
    except Exception as e:  # noqa: BLE001 - the table shows what failed
        first = str(e).splitlines()[0][:120].replace("|", "/") if str(e) else ""
        row["error"] = f"{type(e).__name__}: {first}"
    row["graphs"] = counters["stats"]["unique_graphs"] - graphs  # compiled graphs this cell added
    print(f"{case.name} / {mode} / {policy}: {row.get('ms_step', row.get('error'))}", file=sys.stderr, flush=True)
    return row


def bench_model(case: Case, args, device: torch.device, dtype: torch.dtype) -> list[dict]:
    """Every (mode, policy) cell of one model."""
    model = _build(case, device, dtype)
    x0, kw = case.inputs(device, dtype)
    rows = []
    for mode in MODES:
        if mode == "compile":
            for u in hooked(model).units:  # regional compile: each unit, decisions stay outside
                u.module.compile(fullgraph=True, backend=args.backend)
            # diffskip takes its slots back at a session's start; the plain cell runs first and has none (without
            # this, a plain call after compile-after-attach raises "fullgraph=True found no compiled frames")
            hooked(model).rearm()
        rows += [_cell(case, model, x0, kw, mode, policy, args) for policy in POLICIES]
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def _derive(rows: list[dict]) -> None:
    """Add speed-up vs plain (same model and mode), FLOP speed-up, their ratio and cache share of peak."""
    plain = {(r["model"], r["mode"]): r for r in rows if r["policy"] == "plain" and "error" not in r}
    for r in rows:
        base = plain.get((r["model"], r["mode"]))
        if "error" in r or base is None:
            continue
        r["speedup"] = base["ms_step"] / r["ms_step"]
        ff = r["flops_fraction"]
        r["flop_speedup"] = None if not ff else 1 / ff
        r["wall_over_flop"] = None if not ff else r["speedup"] / r["flop_speedup"]
        r["cache_share"] = None if not r["peak_bytes"] else r["cache_bytes"] / r["peak_bytes"]


def _f(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ok" if ok else " MISS")


def table(rows: list[dict]) -> str:
    """The markdown table with the targets' verdicts beside the values."""
    out = ["| model | mode | policy | ms/step | speed-up | FLOPs frac. | FLOP speed-up | wall/FLOP (>= 0.9, "
           "compile) | peak GiB | cache MiB (% of peak, <= 10%) | syncs/step (<= 2) | units | computed/reused |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {r['mode']} | {r['policy']} | failed: {r['error']} |" + " |" * 9)
            continue
        wof, share = r.get("wall_over_flop"), r.get("cache_share")
        wmark = _mark(wof >= 0.9) if (r["mode"] == "compile" and r["policy"] != "plain" and wof) else ""
        cmark = _mark(share <= 0.10) if share is not None and r["policy"] != "plain" else ""
        cache = f"{r['cache_bytes'] / 2**20:.1f} ({_f(None if share is None else 100 * share, '.1f')}%){cmark}"
        peak = None if r["peak_bytes"] is None else r["peak_bytes"] / 2**30
        cr = "-" if r["computed"] is None else f"{r['computed']}/{r['reused']}"
        out.append(f"| {r['model']} | {r['mode']} | {r['policy']} | {r['ms_step']:.2f} | {_f(r.get('speedup'), '.2f')}"
                   f" | {_f(r['flops_fraction'], '.3f')} | {_f(r.get('flop_speedup'), '.2f')} | {_f(wof, '.2f')}"
                   f"{wmark} | {_f(peak, '.2f')} | {cache} | {r['syncs_step']:.2f}{_mark(r['syncs_step'] <= 2)} | "
                   f"{r['units']} | {cr} |")
    return "\n".join(out)


def report(rows: list[dict], args, device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (tiny configs: a smoke run)"
    return "\n".join([
        "# GPU benchmark", "", f"Measured on {name} with torch {torch.__version__}: {args.steps} steps, "
        f"median of {args.repeats} timed runs after one warm-up, compile backend `{args.backend}`; the whole "
        f"benchmark took {args.minutes:.1f} min.", "",
        f"Command: `{args.command}`", "", f"Targets: {TARGETS}.", "", (__doc__ or "").split("\n\n", 2)[-1].strip(),
        "", table(rows), ""])


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every model's cells, write the report, and return the rows."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny configs on CPU, float32, eager compile backend")
    p.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--steps", type=int, default=None, help="denoiser calls per run (default 10; tiny 3)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per cell (default 2)")
    p.add_argument("--backend", default=None, help="torch.compile backend (default inductor; tiny eager)")
    p.add_argument("--out", default=None, help="report path (default docs/gpu.md; tiny out/gpu_tiny.md)")
    args = p.parse_args(argv)
    args.command = " ".join(["python -m benchmarks.gpu", *(sys.argv[1:] if argv is None else argv)])
    t = args.tiny
    args.steps, args.repeats = args.steps or (3 if t else 10), args.repeats or 2
    args.backend = args.backend or ("eager" if t else "inductor")
    if not t and not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu needs a CUDA device; allowed on CPU: --tiny (tiny configs, a smoke run).")
    device, dtype = (torch.device("cpu"), torch.float32) if t else (torch.device("cuda"), torch.bfloat16)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    t0 = time.perf_counter()
    rows = [r for m in args.models for r in bench_model(CASES[m](t), args, device, dtype)]
    args.minutes = (time.perf_counter() - t0) / 60
    _derive(rows)
    out = Path(args.out or ("out/gpu_tiny.md" if t else "docs/gpu.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(rows, args, device))
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
