"""`diffskip eval`: FID/KID, CLIP score and PSNR/SSIM of a folder of generated images."""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from ..fileio import check_input, check_output, open_image, read_text, write_atomic
from .common import UsageError

DEFAULT_CLIP = "fashion-clip"
RUN_IMAGES = {"grid": re.compile(r"^\d{3}\.png$"), "batch": re.compile(r"^\d{6}\.png$")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the `eval` options."""
    p.add_argument("images", help="folder of generated PNGs (name order; in a `diffskip generate` folder only its "
                                  "images, not the grids)")
    p.add_argument("--reference", default=None, help="folder of real PNGs for FID/KID (its statistics are cached)")
    p.add_argument("--baseline", default=None, help="folder of the unaccelerated PNGs (same names) for PSNR/SSIM")
    p.add_argument("--prompts", default=None,
                   help="manifest.jsonl or a text file, one prompt per image, for CLIP score")
    p.add_argument("--features", default="classifier", choices=["classifier", "inception"],
                   help="feature network for the Frechet distance")
    p.add_argument("--kid", action="store_true", help="also report KID (unbiased for small sample counts)")
    p.add_argument("--clip", default=DEFAULT_CLIP, help="CLIP folder or hub id for CLIP score (the embedded one by "
                                                        "default)")
    p.add_argument("--cache", default=None,
                   help="where reference statistics are cached (default: $XDG_CACHE_HOME/diffskip or "
                        "~/.cache/diffskip)")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file (a new file, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


def load_folder(folder: str, what: str):
    """Return uint8 images (N, 3, H, W) of a folder's PNGs; in a diffskip run folder only its numbered images."""
    import numpy as np
    import torch

    root = check_input(folder, what, folder=True)
    kind = None
    if (root / "run.json").is_file():
        try:
            kind = json.loads(read_text(root / "run.json", "run.json")).get("kind")
        except (ValueError, AttributeError):
            kind = None
    pattern = RUN_IMAGES.get(kind)
    files = sorted(p for p in root.glob("*.png") if pattern is None or pattern.match(p.name))
    if not files:
        raise UsageError(f"{what} {folder}: no .png images there; allowed: a folder of generated PNGs (e.g. the "
                         f"--out folder of `diffskip generate`).")
    arrays = [np.asarray(open_image(f, f"{what} image").convert("RGB")) for f in files]
    odd = [f.name for f, a in zip(files, arrays) if a.shape != arrays[0].shape]
    if odd:
        raise UsageError(f"{what} {folder}: images differ in size ({files[0].name} is {arrays[0].shape[1]}x"
                         f"{arrays[0].shape[0]}, {odd[:3]} are not); allowed: one image size per folder.")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def load_prompts(path: str, n: int) -> list[str]:
    """Return n prompts from a .jsonl (a "prompt" string per row) or a text file (one a line)."""
    lines = [ln for ln in read_text(path, "--prompts").splitlines() if ln.strip()]
    prompts = lines
    if path.endswith(".jsonl"):
        prompts = []
        for i, ln in enumerate(lines, start=1):
            try:
                row = json.loads(ln)
            except (ValueError, RecursionError):
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise UsageError(f"--prompts {path}: row {i} has no \"prompt\" string; allowed: one JSON object with a "
                                 f"\"prompt\" per line (a batch manifest). Fix that row.")
            prompts.append(row["prompt"])
    if len(prompts) != n:
        raise UsageError(f"--prompts {path} has {len(prompts)} prompts for {n} images; allowed: one prompt per image, "
                         f"in image name order.")
    return prompts


def _cache(path: str | None) -> str:
    cache = path or cache_dir()
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--cache {cache}: cannot use it as a folder ({exc.strerror}); allowed: a folder you can "
                         f"write. Fix: pick another --cache.") from None
    if not os.access(cache, os.W_OK):
        raise UsageError(f"--cache {cache}: cannot write there; allowed: a folder you can write.")
    return cache


def run(args: argparse.Namespace) -> None:
    """Compute and print the metrics the given inputs allow."""
    try:
        from ..metrics import feature_network
        from ..metrics.folder import evaluate_folder
    except ModuleNotFoundError as exc:
        raise UsageError(f"diffskip eval needs the [eval] extra ({exc.name} is missing); fix: "
                         f"pip install 'diffskip[eval]' (with torch pinned as you installed it).") from None
    if args.json is not None:
        check_output(args.json, "--json", args.overwrite)
    cache = _cache(args.cache) if args.reference else args.cache
    images = load_folder(args.images, "images")
    real = load_folder(args.reference, "--reference") if args.reference else None
    baseline = load_folder(args.baseline, "--baseline") if args.baseline else None
    prompts = load_prompts(args.prompts, len(images)) if args.prompts else None
    try:
        res = evaluate_folder(images, feature_network(args.features), real, cache or cache_dir(), baseline, prompts,
                              args.clip, args.kid, fid_key="fid" if args.features == "inception" else "fd")
    except Exception as exc:  # a CLIP name that is no folder (the hub is offline), a damaged cache file
        if not isinstance(exc, OSError) and type(exc).__name__ != "SafetensorError":
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise UsageError(f"cannot evaluate ({type(exc).__name__}: {first}); check --clip (the embedded "
                         f"{DEFAULT_CLIP} or a CLIP folder) and --cache.") from None
    print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))
    if args.json:
        write_atomic(args.json, json.dumps(res, indent=1), "--json")


def cache_dir() -> str:
    """Return diffskip's cache folder: $XDG_CACHE_HOME/diffskip, else ~/.cache/diffskip."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "diffskip")
