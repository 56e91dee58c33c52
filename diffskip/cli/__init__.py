"""The `diffskip` command (entry point `diffskip.cli:main`); the parser and dispatch live in `cli/main.py`."""
from __future__ import annotations

from .common import UsageError, policy_spec
from .main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "UsageError", "build_parser", "main", "policy_spec"]
