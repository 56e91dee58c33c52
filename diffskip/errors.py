"""diffskip's errors: one hierarchy, each message naming the bad value, what is allowed and how to fix it.

The CLI prints any `DiffSkipError` as one line (exit status 2). The classes also derive from the builtin a
caller would expect (ValueError, TypeError, RuntimeError), so `except ValueError` keeps working.
"""
from __future__ import annotations

__all__ = ["DiffSkipError", "PolicyError", "UnsupportedModelError", "UnsupportedPipelineError", "SessionError",
           "AssetError", "short"]

MAX_ECHO = 80  # characters of a user's value quoted back in a message


class DiffSkipError(Exception):
    """Base of every error diffskip raises on purpose."""


class PolicyError(DiffSkipError, ValueError):
    """A policy spec or value is invalid."""


class UnsupportedModelError(DiffSkipError, TypeError):
    """No adapter is registered for a model class (or its units cannot be found)."""


class UnsupportedPipelineError(DiffSkipError, TypeError):
    """The pipeline has no denoiser component diffskip can attach to."""


class SessionError(DiffSkipError, RuntimeError):
    """A session or attach/detach call in the wrong state (not attached, already running, ...)."""


class AssetError(DiffSkipError, FileNotFoundError):
    """An embedded model or file is missing from the installed package."""


class RunFolderError(DiffSkipError, ValueError):
    """An output folder holds another run, is in use by another process, or cannot be written."""


class PromptFileError(DiffSkipError, ValueError):
    """A prompt file cannot be read at all (missing, a folder, wrong suffix); bad rows are reported per row."""


__all__ += ["RunFolderError", "PromptFileError"]


def short(value: object, limit: int = MAX_ECHO) -> str:
    """Return repr(value) cut to `limit` characters, so a huge bad input never floods a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
