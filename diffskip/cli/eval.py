"""`diffskip eval`: FID/KID, CLIP score and PSNR/SSIM of a folder of generated images."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import UsageError

DEFAULT_CLIP = "fashion-clip"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the `eval` options."""
    p.add_argument("images", help="folder of generated PNGs (name order)")
    p.add_argument("--reference", default=None,
                   help="folder of real PNGs for FID/KID (its statistics are cached)")
    p.add_argument("--baseline", default=None, help="folder of the unaccelerated PNGs (same names) for PSNR/SSIM")
    p.add_argument("--prompts", default=None, help="manifest.jsonl or a text file, one prompt per image, for CLIP score")
    p.add_argument("--features", default="classifier", choices=["classifier", "inception"])
    p.add_argument("--kid", action="store_true", help="also report KID (unbiased for small sample counts)")
    p.add_argument("--clip", default=DEFAULT_CLIP, help="CLIP folder or hub id for CLIP score (default: the embedded one)")
    p.add_argument("--cache", default=None,
                   help="where reference statistics are cached (default: $XDG_CACHE_HOME/diffskip or ~/.cache/diffskip)")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")


def run(args: argparse.Namespace) -> None:
    """Compute and print the metrics the given inputs allow."""
    try:
        from ..metrics import feature_network
        from ..metrics.folder import evaluate_folder, load_images, load_prompts
    except ModuleNotFoundError as exc:
        raise UsageError(f"diffskip eval needs the [eval] extra ({exc.name} is missing); fix: "
                         f"pip install 'diffskip[eval]' (with torch pinned as you installed it).") from None
    images, _ = load_images(args.images)
    real = load_images(args.reference)[0] if args.reference else None
    baseline = load_images(args.baseline)[0] if args.baseline else None
    prompts = load_prompts(args.prompts, len(images)) if args.prompts else None
    res = evaluate_folder(images, feature_network(args.features), real, args.cache or cache_dir(), baseline, prompts, args.clip,
                          args.kid, fid_key="fid" if args.features == "inception" else "fd")
    print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


def cache_dir() -> str:
    """Return diffskip's cache folder: $XDG_CACHE_HOME/diffskip, else ~/.cache/diffskip."""
    import os

    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "diffskip")
