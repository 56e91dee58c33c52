"""The `diffskip` command: one subcommand per module in `diffskip.commands`."""
from __future__ import annotations

import argparse
import importlib
import logging

import torch

# name -> (module in diffskip.commands, one-line help)
COMMANDS = {
    "generate": ("generate", "render a prompt grid, or every row of a prompt file (--prompts), with a caching policy"),
    "eval": ("eval", "FID/KID, CLIP score and PSNR/SSIM of a folder of generated images"),
    "bench": ("bench", "benchmark diffskip and its peers on the embedded pipelines"),
    "fit-gaussian": ("fit_gaussian", "fit the Gaussian latent statistics for analytic step skipping"),
}


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run a subcommand."""
    p = argparse.ArgumentParser(prog="diffskip", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(module=module)
        sp.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1 is fastest for the small embedded models on a shared 2-core machine)")
        importlib.import_module(f"diffskip.commands.{module}").add_arguments(sp)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    try:
        importlib.import_module(f"diffskip.commands.{args.module}").run(args)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as exc:  # bad input: the message says the fix
        raise SystemExit(f"diffskip {args.cmd}: {type(exc).__name__}: {exc}") from exc


if __name__ == "__main__":
    main()
