"""Control branches shipped with the package, by name, and the base model each was trained for.

A branch folder holds `config.json` + weights (diffusers format) and `diffskip_control.json`, which names the base
pipeline it was trained on, the base denoiser's class and its size. `control_path` turns a shipped name
(`fashion-pixart-relactrl-edges`) or a folder into the folder; `check_base` refuses a branch on the wrong base in
one line naming both.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import AssetError, DiffSkipError, short

__all__ = ["CONTROL_FILE", "ControlMismatchError", "control_names", "control_path", "control_base", "check_base"]

CONTROL_FILE = "diffskip_control.json"


class ControlMismatchError(DiffSkipError, ValueError):
    """A control branch was loaded onto a base model it was not trained for."""


def _root() -> Path:
    found = resources.files(__package__).joinpath("controlnets")
    return found if isinstance(found, Path) else Path(str(found))


def control_names() -> list[str]:
    """Return the names of the control branches shipped with the package."""
    root = _root()
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []


def control_path(control: str | Path) -> Path:
    """Return the folder of a control branch: a folder holding config.json, else a shipped branch's name."""
    text = str(control)
    try:
        given = Path(text)
        if text.strip() and (given / "config.json").is_file():
            return given
    except OSError:  # a name too long for the file system: not a folder, maybe not a name either
        pass
    if "/" not in text and "\\" not in text and text in control_names():
        return _root() / text
    raise AssetError(f"control {short(text, 120)}: not a shipped control branch nor a folder with config.json; "
                     f"allowed: a shipped name {control_names()} (diffskip/assets/controlnets/) or the folder of a "
                     "saved "
                     f"branch. Fix the name or path.")


def control_base(folder: str | Path) -> dict[str, Any]:
    """Return what a branch folder records about its base model ({} when it records nothing)."""
    path = Path(folder) / CONTROL_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise AssetError(f"{path}: expected a JSON object like {{\"base\": \"fashion-pixart\"}}, got {short(data)}.")
    return data


def check_base(folder: str | Path, model: str, denoiser: Any = None) -> None:
    """Refuse a branch whose recorded base differs from `model` (a name) or from the loaded `denoiser`."""
    base = control_base(folder)
    want = base.get("base")
    if not want:
        return
    from . import is_embedded

    name = Path(str(folder)).name
    fix = f"Fix: --model {want} (Python: from_pretrained({want!r}, control={name!r}))."
    if is_embedded(model) and model != want:
        raise ControlMismatchError(f"control branch {name!r} was trained for base model {want!r}, not {model!r}. {fix}")
    if denoiser is None:
        return
    cls, cfg = type(denoiser).__name__, getattr(denoiser, "config", {}) or {}
    got = {"denoiser": cls, "num_layers": cfg.get("num_layers"),
           "dim": (cfg.get("num_attention_heads") or 0) * (cfg.get("attention_head_dim") or 0) or None}
    diffs = [f"{k} {base[k]} there, {got[k]} here" for k in ("denoiser", "num_layers", "dim")
             if k in base and got[k] != base[k]]
    if diffs:
        raise ControlMismatchError(f"control branch {name!r} was trained for base model {want!r} "
                                   f"({', '.join(diffs)}); model {short(model, 80)} does not fit it. {fix}")
