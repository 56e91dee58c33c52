"""The `diffskip` command: one subcommand per module in `diffskip.cli`, each imported only when it runs.

Subcommand modules import nothing heavy at module level, so `diffskip --help` and `diffskip generate --help`
never load torch. Every `DiffSkipError` (and bad input a subcommand reports) prints as one line, exit 2;
Ctrl-C prints how to resume and exits 130.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import DiffSkipError
from .options import Parser, int_in

# name -> (module in diffskip.cli, one-line help)
COMMANDS = {
    "generate": ("generate", "render a prompt grid, or every row of a prompt file (--prompts), with a caching policy"),
    "eval": ("eval", "FID/KID, CLIP score and PSNR/SSIM of a folder of generated images (needs the [eval] extra)"),
    "fit-gaussian": ("fit_gaussian", "fit the Gaussian latent statistics for analytic step skipping"),
    "tune": ("tune", "find the best plan (steps, policy, scheduler, jump) within a FLOPs budget; save it as JSON"),
}


class UsageError(DiffSkipError, ValueError):
    """Bad command-line input found after parsing (printed as one line, exit status 2)."""


def policy_spec(text: str) -> str:
    """argparse type: a policy spec, checked now so its own message reaches the user."""
    from ..policies import parse  # light: no torch

    try:
        return str(parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand's options."""
    p = Parser(prog="diffskip", description="Make diffusers pipelines cheaper to run.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(module=module)
        sp.add_argument("--threads", type=int_in(1, 1024), default=None,
                        help="CPU threads for torch (default: torch's own choice)")
        importlib.import_module(f"{__name__}.{module}").add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run a subcommand; return its exit status (errors exit 2, Ctrl-C 130)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise UsageError(f"--threads {args.threads}: allowed: an int >= 1, or leave it out.")
            import torch

            torch.set_num_threads(args.threads)
        status = importlib.import_module(f"{__name__}.{args.module}").run(args)
    except KeyboardInterrupt:
        print(f"diffskip {args.cmd}: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except (DiffSkipError, ValueError, FileNotFoundError) as exc:  # bad input: the message says the fix
        print(f"diffskip {args.cmd}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except MemoryError:
        print(f"diffskip {args.cmd}: error: out of memory; fix: a smaller --size or --batch-size.", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as exc:  # torch.OutOfMemoryError (a RuntimeError) on a GPU; anything else is a bug
        if type(exc).__name__ != "OutOfMemoryError":
            raise
        print(f"diffskip {args.cmd}: error: out of device memory; fix: a smaller --size or --batch-size.",
              file=sys.stderr)
        sys.exit(2)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
