"""The default benchmark grid: diffskip and every peer at 3-4 operating points on a UNet or DiT pipeline."""
from __future__ import annotations

# forecast=0 keeps replay-as-is points (DeepCache-equivalent); forecast=1 and final=1 are the defaults
DIFFSKIP = ["interval:every=2,forecast=0", "interval:every=3,forecast=0", "uniform:speedup=2,forecast=0",
            "threshold:threshold=0.2,forecast=0",
            "interval:every=2", "interval:every=3", "interval:every=4", "interval:every=6",
            "uniform:speedup=2", "uniform:speedup=3", "uniform:speedup=3.5", "threshold", "threshold:target=0.35",
            "threshold:target=0.8",  # added after the first 20-step cell: a point near PAB's 0.97-0.98 FLOPs
            "interval:every=4,head=0", "interval:every=6,head=0", "interval:every=8,head=0"]
# caching windows as fractions of the run (every, start, end, head): the steps outside [start, end) compute
WINDOWS = [(2, 0.0, 0.8, None), (3, 0.0, 0.9, None), (3, 0.0, 0.96, 0)]


def diffskip_points(steps: int) -> list[str]:
    """Return the diffskip policy specs benchmarked at `steps` steps (windows scale with the step count)."""
    windows = [f"interval:every={k}," + (f"start={round(a * steps)}," if a else "") + f"end={round(b * steps)},"
               + ("" if head is None else f"head={head},") + "forecast=1" for k, a, b, head in WINDOWS]
    return DIFFSKIP + windows


def default_methods(kind: str, steps: int) -> list[str]:
    """Return the method specs benchmarked on a "unet" or "dit" pipeline at `steps` steps (baseline first)."""
    if kind not in ("unet", "dit"):
        raise ValueError(f"kind={kind!r}: allowed 'unet' or 'dit'")
    gates = sorted({max(1, round(steps * f)) for f in (0.25, 0.5, 0.75)})
    methods = ["none", "none/seeds=1", "none/seeds=2"] + [f"diffskip/{p}" for p in diffskip_points(steps)]
    fewer = sorted({max(1, round(steps * f)) for f in (0.35, 0.45, 0.5, 0.65, 0.8)})  # every FLOPs level
    methods += [f"steps/n={n}" for n in fewer] + [f"steps/n={n},scheduler=dpm++" for n in fewer]
    methods += [f"tgate/gate_step={g}" for g in gates]
    methods += [f"taylorseer/interval={k}" for k in (2, 3, 5)]
    methods += [f"pab/skip={k}" for k in (2, 3, 4)]
    methods += ["fastercache/skip=2"]  # refuses both (recorded as a result)
    if kind == "unet":
        methods += [f"deepcache/interval={k}" for k in (2, 3, 5)]
        methods += ["fbc/threshold=0.05", "magcache/threshold=0.06", "cachedit/threshold=0.08"]  # refusals
        return methods
    methods += [f"fbc/threshold={t}" for t in (0.1, 0.2, 0.4)]
    methods += [f"magcache/threshold={t}" for t in (0.03, 0.06, 0.12)]
    methods += [f"cachedit/threshold={t}" for t in (0.04, 0.08, 0.16)]
    methods += [f"cachedit/threshold={t},taylor=1" for t in (0.08, 0.16, 0.32)]
    methods += ["deepcache/interval=3"]  # UNet only (recorded as a result)
    return methods
