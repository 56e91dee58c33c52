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

__all__ = ["COMMANDS", "build_parser", "main"]

# name -> (module in diffskip.cli, one-line help)
COMMANDS = {
    "generate": ("generate", "render a prompt grid, or every row of a prompt file (--prompts), with a caching policy"),
    "eval": ("eval", "FID/KID, CLIP score and PSNR/SSIM of a folder of generated images (needs the [eval] extra)"),
    "fit-gaussian": ("fit_gaussian", "fit the Gaussian latent statistics for analytic step skipping"),
    "tune": ("tune", "find the best plan (steps, policy, scheduler, jump) within a FLOPs budget; save it as JSON"),
}
PACKAGE = __name__.rsplit(".", 1)[0]


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default (when it has a real one and the help does not already say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
                and "default" not in text and action.option_strings):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand's options."""
    p = Parser(prog="diffskip", description="Make diffusers pipelines cheaper to run.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_, formatter_class=DefaultsFormatter)
        sp.set_defaults(module=module)
        sp.add_argument("--threads", type=int_in(1, 1024), default=None,
                        help="CPU threads for torch (default: torch's own choice)")
        importlib.import_module(f"{PACKAGE}.{module}").add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run a subcommand; return its exit status (errors exit 2, Ctrl-C 130)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        status = importlib.import_module(f"{PACKAGE}.{args.module}").run(args)
    except KeyboardInterrupt:
        print(f"diffskip {args.cmd}: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except (DiffSkipError, ValueError, FileNotFoundError) as exc:  # bad input: the message says the fix
        _fail(args.cmd, str(exc))
    except MemoryError:
        _fail(args.cmd, "out of memory; fix: a smaller --size or --batch-size.")
    except RuntimeError as exc:  # torch.OutOfMemoryError (a RuntimeError) on a GPU; anything else is a bug
        if type(exc).__name__ != "OutOfMemoryError":
            raise
        _fail(args.cmd, "out of device memory; fix: a smaller --size or --batch-size.")
    return status or 0


def _fail(cmd: str, message: str) -> None:
    """Print one error line and exit 2."""
    print(f"diffskip {cmd}: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)

