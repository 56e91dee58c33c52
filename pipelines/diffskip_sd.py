"""Diffusers custom pipeline: Stable Diffusion with diffskip's feature-inheritance caching on the UNet.

Load it on any Stable Diffusion folder or hub id, without importing diffskip yourself:

    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("pipelines/fashion-sd", custom_pipeline="pipelines/diffskip_sd.py")
    image = pipe("a photo of a coat", policy="interval:every=3").images[0]
    print(pipe.last_stats)  # steps, computed / reused unit evaluations, fraction of denoiser FLOPs executed

`policy` takes any diffskip spec ("uniform:speedup=2", "threshold:threshold=0.1", "never" for the exact
baseline); without it the class default `DEFAULT_POLICY` is used. Everything else is
StableDiffusionPipeline's own call signature.
"""
from __future__ import annotations

from typing import Any

from diffusers import StableDiffusionPipeline


class DiffSkipStableDiffusionPipeline(StableDiffusionPipeline):
    """StableDiffusionPipeline whose calls run under a diffskip caching policy; stats in `last_stats`."""

    DEFAULT_POLICY = "interval:every=3"

    def __call__(self, *args: Any, policy: Any = None, **kwargs: Any):
        """Run StableDiffusionPipeline.__call__ with `policy` (a spec string or diffskip Policy) active."""
        from diffskip import DiffSkipPipeline

        plain = StableDiffusionPipeline(**self.components,  # shares every component; only the call differs
                                        requires_safety_checker=self.config.get("requires_safety_checker", True))
        plain.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        fast = DiffSkipPipeline(plain, self.DEFAULT_POLICY if policy is None else policy)
        out = fast(*args, **kwargs)
        self.last_stats = fast.last_stats
        return out
