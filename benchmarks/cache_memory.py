"""Peak memory with and without caching on the embedded models (CPU peak RSS, one fresh process per cell).

    OMP_NUM_THREADS=1 python -m benchmarks.cache_memory [--sizes 256 512 1024] [--models fashion-sd fashion-pixart]

Each cell runs in its own process, so ru_maxrss is that configuration's peak: load, then one call of one
prompt x 3 steps (guidance 4, so a CFG batch of 2) at the given size. `cache MB` is `last_stats.cache_bytes`,
the caches' own peak. Writes docs/bench_memory.md and docs/bench_memory.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

POLICIES = ("never", "interval:every=3", "threshold:target=0.5", "uniform:speedup=2", "interval:every=3,forecast=0")
CELL = """
import json, resource, sys, torch
torch.set_num_threads(1)
from diffskip import DiffSkipPipeline
model, size, policy = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pipe = DiffSkipPipeline.from_pretrained(model, policy=policy)
pipe.set_progress_bar_config(disable=True)
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pipe("a photo of a t-shirt", num_inference_steps=3, guidance_scale=4.0, height=size, width=size,
     generator=torch.Generator().manual_seed(0))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"loaded_mb": loaded / 1024, "peak_mb": peak / 1024,
                  "cache_mb": pipe.last_stats.cache_bytes / 2**20}))
"""


def cell(model: str, size: int, policy: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CELL, model, str(size), policy], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["fashion-sd", "fashion-pixart"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    ap.add_argument("--out", default="docs/bench_memory")
    args = ap.parse_args()
    rows, lines = [], ["| model | size | policy | peak RSS MB | after load MB | cache MB (stats) | peak / `never` |",
                       "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for model in args.models:
        for size in args.sizes:
            base = None
            for policy in POLICIES:
                r = dict(cell(model, size, policy), model=model, size=size, policy=policy)
                base = base or r["peak_mb"]
                r["ratio"] = r["peak_mb"] / base
                rows.append(r)
                lines.append(f"| {model} | {size} | `{policy}` | {r['peak_mb']:.0f} | {r['loaded_mb']:.0f} | "
                             f"{r['cache_mb']:.1f} | {r['ratio']:.2f} |")
                print(lines[-1], flush=True)
                Path(args.out + ".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    head = ("# Cache memory\n\nPeak RSS of one process per cell, CPU, one prompt x 3 steps at guidance 4 "
            "(CFG batch 2), float32; `python -m benchmarks.cache_memory`. "
            "Target (issue #24): `interval` at most 1.15x `never`.\n\n")
    Path(args.out + ".md").write_text(head + "\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
