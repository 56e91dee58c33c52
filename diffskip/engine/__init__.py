"""The caching engine: hooks (attach/detach), clock, plan, cache, FLOP meter, and the session wiring them."""
from __future__ import annotations

from .hooks import attach, detach, hooked
from .session import Session, session
from .stats import CallRecord, Stats

__all__ = ["attach", "detach", "hooked", "session", "Session", "Stats", "CallRecord"]
