"""`python -m benchmarks`: every method on the embedded pipelines, same prompts and seeds; tables, JSON and plots."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from .suite import KINDS, run_suite, write_report


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the `bench` options."""
    p.add_argument("--pipelines", nargs="+", default=sorted(KINDS), choices=sorted(KINDS))
    p.add_argument("--steps", nargs="+", type=int, default=[20, 50])
    p.add_argument("--n", type=int, default=200, help="images per operating point")
    p.add_argument("--batch", type=int, default=50, help="generation batch size")
    p.add_argument("--features", default="classifier", choices=["classifier", "inception"],
                   help="Frechet feature space: the Fashion classifier (fast) or FID's Inception (slow)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="method specs (default: the full grid); 'none' must come first")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    p.add_argument("--timing-batch", type=int, default=8)
    p.add_argument("--retime", action="store_true",
                   help="re-measure the wall-clock of every finished point, round-robin across methods")
    p.add_argument("--out", default="out/bench", help="resumable raw results and images")
    p.add_argument("--docs", default="docs", help="where the report section, JSON and plots go")


def run(args: argparse.Namespace) -> None:
    """Run the suite (resuming), then write and print the report."""
    logging.getLogger("diffskip").setLevel(logging.INFO)
    results = run_suite(args.pipelines, args.steps, args.n, args.features, args.out, args.methods,
                        retime=args.retime, batch=args.batch, repeats=args.repeats, timing_batch=args.timing_batch)
    command = "python -m benchmarks " + shlex.join(sys.argv[1:])
    md = write_report(results, args.docs, args.features, command)
    out = Path(args.docs) / f"bench_{args.features}.md"
    out.write_text(md + "\n")
    print(md)
    print(f"wrote {out}, {Path(args.docs) / f'bench_{args.features}.json'} and the plots")


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the benchmark."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    add_arguments(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
