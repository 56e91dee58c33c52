"""Control conditions computed deterministically in torch (Sobel edges, silhouette masks) and their fidelity.

Edges: grayscale in [0, 1], 3x3 Sobel gradients, magnitude > EDGE_THRESHOLD (no thinning, no hysteresis:
it is a thresholded Sobel map, not Canny). Masks: grayscale > MASK_THRESHOLD, then a 3x3 closing (max-pool,
then min-pool) that fills pin holes. Both return float images in {-1, 1} (B, 3, H, W), the form the control
path feeds to the VAE, white where the condition is on.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["EDGE_THRESHOLD", "MASK_THRESHOLD", "CONDITIONS", "gray", "edge_map", "edges", "masks", "condition",
           "edge_f1", "hausdorff"]

EDGE_THRESHOLD = 1.0  # Sobel magnitude on [0, 1] gray (a full black-to-white step gives 4)
MASK_THRESHOLD = 0.1
CONDITIONS = ("edges", "mask")
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def gray(images: torch.Tensor) -> torch.Tensor:
    """Return (B, 1, H, W) gray in [0, 1] from uint8 [0, 255] or float [-1, 1] images (B, C, H, W)."""
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}.")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else (images.float().clamp(-1, 1) + 1) / 2
    return x.mean(dim=1, keepdim=True)


def edge_map(images: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """Return boolean Sobel edges (B, H, W): gradient magnitude of the gray image above `threshold`."""
    g = F.pad(gray(images), (1, 1, 1, 1), mode="replicate")
    k = torch.stack([_SOBEL, _SOBEL.T])[:, None].to(g.device)  # (2, 1, 3, 3)
    gx, gy = F.conv2d(g, k).unbind(1)
    return (gx.square() + gy.square()).sqrt() > threshold


def _as_image(on: torch.Tensor) -> torch.Tensor:
    return (on.float() * 2 - 1)[:, None].expand(-1, 3, -1, -1).contiguous()  # (B, 3, H, W) in {-1, 1}


def edges(images: torch.Tensor) -> torch.Tensor:
    """Return the edge condition images (B, 3, H, W) in {-1, 1}."""
    return _as_image(edge_map(images))


def masks(images: torch.Tensor, threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """Return the silhouette condition images (B, 3, H, W) in {-1, 1}: gray > threshold, then a 3x3 closing."""
    on = (gray(images) > threshold).float()
    closed = -F.max_pool2d(-F.max_pool2d(on, 3, 1, 1), 3, 1, 1)
    return _as_image(closed[:, 0] > 0.5)


def condition(name: str, images: torch.Tensor) -> torch.Tensor:
    """Return the named condition ("edges" or "mask") of images."""
    if name == "edges":
        return edges(images)
    if name == "mask":
        return masks(images)
    raise ValueError(f"condition={name!r} is unknown; allowed: {list(CONDITIONS)}.")


def edge_f1(pred: torch.Tensor, target: torch.Tensor, tolerance: int = 1) -> torch.Tensor:
    """Return per-image edge F1 (B,) of boolean maps (B, H, W), a match within `tolerance` pixels (Chebyshev).

    Precision: predicted edge pixels near a target edge; recall: target edge pixels near a predicted edge.
    Two empty maps score 1, one empty map scores 0.
    """
    k = 2 * tolerance + 1
    near = lambda m: F.max_pool2d(m.float()[:, None], k, 1, tolerance)[:, 0] > 0  # noqa: E731
    p, t = pred.flatten(1).sum(1).float(), target.flatten(1).sum(1).float()
    prec = (pred & near(target)).flatten(1).sum(1) / p.clamp(min=1)
    rec = (target & near(pred)).flatten(1).sum(1) / t.clamp(min=1)
    f1 = 2 * prec * rec / (prec + rec).clamp(min=1e-12)
    return torch.where((p == 0) & (t == 0), torch.ones_like(f1), f1)


def hausdorff(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return per-image symmetric Hausdorff distance in pixels (B,) between boolean maps (B, H, W).

    Two empty maps give 0; one empty map gives the image diagonal (the largest possible distance).
    """
    h, w = pred.shape[-2:]
    out = []
    for p, t in zip(pred, target):
        ps, ts = p.nonzero().float(), t.nonzero().float()
        if len(ps) == 0 or len(ts) == 0:
            out.append(0.0 if len(ps) == len(ts) else math.hypot(h, w))
            continue
        d = torch.cdist(ps, ts)
        out.append(max(d.min(1).values.max().item(), d.min(0).values.max().item()))
    return torch.tensor(out)
