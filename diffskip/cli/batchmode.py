"""`diffskip generate --prompts FILE`: every row of a prompt file into a resumable folder (accelerate-aware)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checks import check_loaded, identity, precheck
from .common import UsageError, device, load


def run_batch(args: argparse.Namespace) -> int:
    """Generate every row of `--prompts` into `--out` (resumable, split across accelerate processes).

    Returns 1 when some rows were bad (the good ones still run), else 0; the end-of-run report prints however
    the run ends. With --overwrite the earlier files go only once the model has loaded and passed its checks.
    """
    from accelerate import PartialState

    from ..batch import manifest_rows, read_prompts, row_differences
    from ..runfolder import RunFolder, refuse

    if args.prompt or args.per_prompt != 1:
        raise UsageError("--prompts (batch mode) reads its prompts from the file, one image per row; allowed "
                         "with it: no --prompt / --per-prompt. Fix: drop them, or drop --prompts for the grid.")
    if args.control_image:
        raise UsageError("--control-image is for the grid; in batch mode each row names its own condition image "
                         "(a control_image column in the .jsonl file).")
    rows, bad = read_prompts(args.prompts, base_seed=args.seed, width=args.size, height=args.size)
    precheck(args)
    state = PartialState(cpu=device(args.device) == "cpu")  # gloo on CPU; without cpu=True accelerate stays 1 process
    folder = RunFolder(args.out, "batch", args.overwrite)
    if state.is_main_process:
        for b in bad:
            print(f"error: {b} (row skipped; fix it and run again: finished images are kept)", file=sys.stderr)
        folder.open()
    job = None
    try:
        if state.is_main_process and not args.overwrite:
            folder.check(identity(args), keys=sorted(identity(args)))
            diffs = row_differences(manifest_rows(Path(args.out)), rows)
            if diffs:
                raise refuse(Path(args.out), diffs, "images of other prompt rows")
        job = False  # checks passed: from here on the end-of-run report prints however the run ends
        job = _start(args, state, folder)
        _run_rows(job, rows, state)
        return 1 if bad else 0
    finally:
        folder.close()
        if job is not None and state.is_main_process:
            _report(args, job or None, state, len(rows) + len(bad), bad)


def _start(args: argparse.Namespace, state, folder):
    """Load and check the model, clear the folder for --overwrite, record the run; return the BatchRun."""
    from ..batch import BatchRun

    pipe = load(args.model, args.policy, args.plan, args.control, getattr(args, "force", False))
    check_loaded(pipe, args)
    if state.is_main_process:
        if args.overwrite:
            folder.clear()  # only now: a run that cannot start deletes nothing
        folder.record(identity(args, pipe))
    pipe.to(state.device)
    pipe.set_progress_bar_config(disable=True)
    return BatchRun(pipe, args.out, steps=args.steps, guidance=args.guidance, batch_size=args.batch_size,
                    state=state, model=args.model, control_scale=args.control_scale if args.control else None)


def _run_rows(job, rows: list, state) -> None:
    from tqdm import tqdm

    mine = job.prepare(rows)
    todo = sum(r.index not in job.done for b in mine for r in b)
    with tqdm(total=todo, unit="img", desc=f"rank {state.process_index}", disable=not state.is_main_process) as bar:
        for _ in job.run(mine):
            bar.update(1)
    job.finish()


def _report(args: argparse.Namespace, job, state, total: int, bad: list) -> None:
    """Print the end-of-run report (also after a failure or Ctrl-C) and the bad rows again."""
    from ..batch import MANIFEST, read_done

    done = len(read_done(Path(args.out)))
    made, there = (job.made, len(getattr(job, "done", ()))) if job else (0, done)
    redone = (f"; {len(job.redone)} damaged image(s) made again: {', '.join(job.redone[:3])}"
              if job and job.redone else "")
    print(f"{done} of {total} rows done in {args.out}/ ({made} made now, {there} were already there{redone}; "
          f"{state.num_processes} process(es)); manifest {Path(args.out) / MANIFEST}")
    for b in bad:
        print(f"error: {b}", file=sys.stderr)
