"""The embedded models shipped inside the package, found through importlib.resources (never via cwd).

`fashion-sd` (UNet) and `fashion-pixart` (DiT) are small text-to-image pipelines trained on Fashion-MNIST;
`fashion-clip` and `fashion-classifier` are the evaluation networks for them (docs/models.md).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import AssetError

__all__ = ["PIPELINES", "NETWORKS", "path", "is_embedded"]

PIPELINES = ("fashion-sd", "fashion-pixart")
NETWORKS = ("fashion-clip", "fashion-classifier")


def is_embedded(name: str) -> bool:
    """Return True when `name` names an embedded model (a bare name, not a path)."""
    return name in PIPELINES + NETWORKS


def path(name: str) -> Path:
    """Return the folder of embedded model `name` inside the installed package."""
    if not is_embedded(name):
        raise AssetError(f"{name!r} is not an embedded model; allowed: {list(PIPELINES + NETWORKS)}.")
    found = resources.files(__name__).joinpath(name)
    if not isinstance(found, Path) or not found.is_dir():
        raise AssetError(f"embedded model {name!r} is missing from the installed package ({found}); reinstall "
                         f"diffskip from a wheel or a clone that includes diffskip/assets/.")
    return found
