"""The default benchmark grid: diffskip and every peer at 3-4 operating points on a UNet or DiT pipeline."""
from __future__ import annotations

DIFFSKIP = ["interval:every=2", "interval:every=3", "interval:every=5", "uniform:speedup=2", "uniform:speedup=3",
            "threshold:threshold=0.1", "threshold:threshold=0.2",
            "interval:every=2,forecast=1", "interval:every=3,forecast=1", "interval:every=4,forecast=1",
            "uniform:speedup=2,forecast=1", "uniform:speedup=3,forecast=1", "threshold:threshold=0.2,forecast=1",
            "interval:every=2,end=16,forecast=1", "interval:every=3,end=17,forecast=1",
            "interval:every=2,end=10,forecast=1"]


def default_methods(kind: str, steps: int) -> list[str]:
    """Return the method specs benchmarked on a "unet" or "dit" pipeline at `steps` steps (baseline first)."""
    if kind not in ("unet", "dit"):
        raise ValueError(f"kind={kind!r}: allowed 'unet' or 'dit'")
    gates = sorted({max(1, round(steps * f)) for f in (0.25, 0.5, 0.75)})
    methods = ["none", "none/seeds=1", "none/seeds=2"] + [f"diffskip/{p}" for p in DIFFSKIP]
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
