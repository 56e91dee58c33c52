"""diffskip: make Hugging Face Diffusers pipelines cheaper (feature-inheritance caching, analytic step skipping).

Names are imported on first use, so `import diffskip` (and the CLI's --help) stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_NAMES = {  # public name -> module that defines it
    "DiffSkipPipeline": "pipeline", "attach": "engine.hooks", "detach": "engine.hooks",
    "session": "engine.session", "register": "adapters", "Adapter": "adapters", "register_policy": "policies",
    "parse": "policies", "Policy": "policies", "Never": "policies", "Interval": "policies",
    "Uniform": "policies", "Profile": "policies", "Threshold": "policies", "Mask": "policies",
    "GaussianSkip": "analytic", "GaussianStats": "analytic", "tune": "tuning", "relevance": "tuning",
}
__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diffskip' has no attribute {name!r}; public names: {sorted(_NAMES)}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
