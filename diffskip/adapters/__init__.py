"""Adapters: where an architecture's cacheable units are and how a skipped unit is replayed.

An adapter is data. Registered per class key "package:Class" and found by walking the model's MRO, so a
subclass of a supported model is supported too. `register()` adds any model in a few lines; `detect()` finds
the block lists and their streams of a model with no registered adapter.
"""
from __future__ import annotations

from . import comfy as _comfy  # noqa: F401  (ComfyUI's model classes, by key; imports no comfy)
from . import diffusers as _diffusers  # noqa: F401  (registers the built-in adapters)
from .base import (Adapter, UnsupportedModelError, find_adapter, register, registered, resolve_layout,
                   resolve_units)
from .detect import describe, detect, detect_static

__all__ = ["Adapter", "register", "registered", "find_adapter", "resolve_units", "resolve_layout", "detect",
           "detect_static", "describe", "UnsupportedModelError"]
