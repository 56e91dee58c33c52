"""Generate images for every row of a prompt file (resumable; `accelerate launch` splits it over processes).

    python samples/batch_generate.py --prompts samples/prompts/garments.jsonl --model fashion-sd \
        --policy interval:every=3 --steps 25 --batch-size 8 --out out/batch
    accelerate launch --num_processes 2 samples/batch_generate.py --prompts ... --out out/batch

The same code as `diffskip generate --prompts ...`; this script only parses arguments.
"""
from __future__ import annotations

import argparse
import sys

import torch

from diffskip.cli import generate


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the batch."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    generate.add_arguments(p)
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    args = p.parse_args(argv)
    if not args.prompts:
        p.error("--prompts is required (a .txt or .jsonl prompt file)")
    torch.set_num_threads(args.threads)
    return generate.run_batch(args)


if __name__ == "__main__":
    sys.exit(main())
