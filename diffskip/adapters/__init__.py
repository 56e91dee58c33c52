"""Adapters: where an architecture's cacheable units are and how a skipped unit is replayed.

An adapter is data. Registered per class key "package:Class" and found by walking the model's MRO, so a
subclass of a supported model is supported too. `register()` adds any model in a few lines.
"""
from __future__ import annotations

from . import comfy as _comfy  # noqa: F401  (ComfyUI's model classes, by key; imports no comfy)
from . import diffusers as _diffusers  # noqa: F401  (registers the built-in adapters)
from .base import Adapter, UnsupportedModelError, find_adapter, register, resolve_layout, resolve_units

__all__ = ["Adapter", "register", "find_adapter", "resolve_units", "resolve_layout", "UnsupportedModelError"]
