"""Compute measures for any acceleration method: executed denoiser FLOPs, wall-clock medians, peak memory."""
from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


class _Untracked:
    """Stand-in for FlopCounterMode's module tracker: every FLOP goes to "Global"."""

    parents = {"Global"}

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class FlatFlopCounter(FlopCounterMode):
    """FlopCounterMode without its per-module tracker, whose name walk recurses forever on module graphs with
    cycles (cache-dit's patched transformers)."""

    def __init__(self) -> None:
        super().__init__(display=False)
        self.mod_tracker = _Untracked()


class DenoiserMeter:
    """Time and count a denoiser's calls with module hooks (around whatever `forward` a method installed).

    With `count_flops`, each call runs under a `torch.utils.flop_counter.FlopCounterMode`, so what a method
    really executed is counted, whatever its hooks skip or add. Hooks, not a forward wrapper: some methods
    (cache-dit) look `forward` up again inside their own wrapper.
    """

    def __init__(self, model: torch.nn.Module, count_flops: bool = False) -> None:
        self.model, self.count_flops = model, count_flops
        self.calls, self.flops, self.seconds = 0, 0, 0.0
        self._open: list[tuple[float, FlatFlopCounter | None]] = []
        self._handles = [model.register_forward_pre_hook(self._pre), model.register_forward_hook(self._post)]

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        counter = FlatFlopCounter() if self.count_flops and not self._open else None
        if counter is not None:
            counter.__enter__()
        self._open.append((time.perf_counter(), counter))

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        t0, counter = self._open.pop()
        if counter is not None:
            counter.__exit__(None, None, None)
            self.flops += counter.get_total_flops()
        if not self._open:  # re-entrant calls count once
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def reset(self) -> None:
        """Zero the counters."""
        self.calls, self.flops, self.seconds = 0, 0, 0.0

    def close(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory above the starting point inside the block: CUDA max allocated, else sampled CPU RSS."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak_bytes = interval, 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._base = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, _rss_bytes() - self._base)
            self._stop.wait(self.interval)

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._base
            return
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, _rss_bytes() - self._base)


def time_calls(call: Callable[[], Any], meter: DenoiserMeter, repeats: int = 5) -> dict:
    """Run `call` once to warm up, then `repeats` times; return median pipeline and denoiser seconds and peak memory.

    Raises:
        ValueError: if `repeats` < 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: need at least 1 timed repeat (5 or more for a median worth reporting)")
    call()
    totals, denoiser = [], []
    with PeakMemory() as mem:
        for _ in range(repeats):
            meter.reset()
            t0 = time.perf_counter()
            call()
            totals.append(time.perf_counter() - t0)
            denoiser.append(meter.seconds)
    return {"seconds": statistics.median(totals), "denoiser_seconds": statistics.median(denoiser),
            "repeats": repeats, "threads": torch.get_num_threads(), "peak_mb": round(mem.peak_bytes / 2**20, 1)}
