"""ComfyUI custom nodes: one node per registered caching policy, a report node and a tuned-plan node.

Nothing imports comfy at module top and nothing is patched at import. The node classes and the live
`NODE_CLASS_MAPPINGS` are in `nodes.py`, the clone patching in `patch.py`, the plan node in `plan.py`.
"""
from __future__ import annotations

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .patch import apply_policy, last_stats, policy_of

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "apply_policy", "last_stats", "policy_of"]
