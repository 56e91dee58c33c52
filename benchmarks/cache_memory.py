"""Peak memory with and without caching on the embedded fashion-sd (CPU peak RSS, one fresh process per cell).

    OMP_NUM_THREADS=1 python -m benchmarks.cache_memory            # prints the markdown table of docs/batch.md

Each cell runs in its own process, so ru_maxrss is that configuration's peak: load,
then one call of 10 prompts x 10 steps (guidance 4, so a CFG batch of 20) at the given size. `cache MB` is
`last_stats.cache_bytes`, the caches' own peak.
"""
from __future__ import annotations

import json
import subprocess
import sys

CELL = """
import json, resource, sys, torch
torch.set_num_threads(1)
from diffskip import DiffSkipPipeline
size, policy = int(sys.argv[1]), sys.argv[2]
pipe = DiffSkipPipeline.from_pretrained("fashion-sd", policy)
pipe.set_progress_bar_config(disable=True)
prompts = ["a photo of a t-shirt", "a dress, studio photo", "a bag on white", "a sandal", "a coat"] * 2
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pipe(prompts, num_inference_steps=10, guidance_scale=4.0, height=size, width=size,
     generator=torch.Generator().manual_seed(0))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"loaded_mb": loaded / 1024, "peak_mb": peak / 1024, "cache_mb": getattr(pipe.last_stats, "cache_bytes", 0) / 2**20}))
"""


def cell(size: int, policy: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CELL, str(size), policy], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("| size | policy | peak RSS MB | after load MB | cache MB (stats) | peak over `never` |")
    print("|---|---|---|---|---|---|")
    for size in (128, 256):
        base = None
        for policy in ("never", "interval:every=3", "uniform:speedup=2", "threshold:threshold=0.1"):
            r = cell(size, policy)
            base = base or r["peak_mb"]
            print(f"| {size} | `{policy}` | {r['peak_mb']:.0f} | {r['loaded_mb']:.0f} | {r['cache_mb']:.1f} | "
                  f"{r['peak_mb'] - base:+.0f} MB ({(r['peak_mb'] / base - 1) * 100:+.0f}%) |", flush=True)


if __name__ == "__main__":
    main()
