"""The step clock: read from the denoiser's own `timestep` argument, so no pipeline has to help.

Smaller timestep than the last call -> next step; equal -> another guidance pass of the same step; larger ->
a new run. This serves txt2img, img2img, inpainting, ControlNet, community pipelines and ComfyUI alike.
"""
from __future__ import annotations

import torch

__all__ = ["Clock", "read_timestep"]


def read_timestep(args: tuple, kwargs: dict, name: str, index: int | None) -> float:
    """Return the timestep argument `name` (or positional `index`) of a denoiser call as a float.

    One host read per call: free for Python numbers and CPU tensors, one device sync for a GPU tensor.
    """
    t = kwargs[name] if name in kwargs else args[index] if index is not None and index < len(args) else None
    if t is None:
        raise TypeError(f"the denoiser was called without its {name!r} argument; diffskip's step clock needs it. "
                        f"Set the adapter's timestep= to the right argument name.")
    # the largest value: ComfyUI's Wan 2.2 / LTX-Video image-to-video give per-frame timesteps, 0 on the kept frame
    return float(t.max()) if isinstance(t, torch.Tensor) else float(t)


class Clock:
    """Turn a stream of timesteps into (run, step, branch) positions."""

    def __init__(self) -> None:
        self.run = -1
        self.step = -1
        self.branch = 0
        self.last: float | None = None

    def tick(self, t: float) -> bool:
        """Advance to the call with timestep `t`; return True when it starts a new run."""
        new_run = self.last is None or t > self.last
        if new_run:
            self.run, self.step, self.branch = self.run + 1, 0, 0
        elif t < self.last:
            self.step, self.branch = self.step + 1, 0
        else:
            self.branch += 1
        self.last = t
        return new_run
