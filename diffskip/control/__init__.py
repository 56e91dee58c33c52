"""Relevance-guided light control (RelaCtrl): TDSM branches at the relevant blocks, a full ControlNet baseline.

Names are imported on first use (diffusers loads only when a control model is used).
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"TDSMBlock": "tdsm", "RelaCtrlModel": "models", "FullControlNetModel": "models",
          "ControlRun": "inject", "controlling": "inject", "condition_tokens": "inject", "load_control": "inject",
          "as_condition_images": "inject", "edges": "conditions", "masks": "conditions", "condition": "conditions",
          "edge_map": "conditions", "edge_f1": "conditions", "hausdorff": "conditions",
          "relevance_scores": "relevance", "groups_for": "relevance"}
__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'diffskip.control' has no attribute {name!r}")
