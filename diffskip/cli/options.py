"""argparse types that check a value while the command line is parsed, before any model loads.

Each one names the value, what is allowed and how to fix it; the parser prints that as one line, exit 2.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

MAX_STEPS = 10_000  # beyond any scheduler's training timesteps; the loaded scheduler's own limit is checked later
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed's range
MAX_SIZE = 2048  # pixels per side
MAX_GUIDANCE = 100.0


def int_in(lo: int, hi: int, what: str = "") -> Callable[[str], int]:
    """Return an argparse type: an int in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text) if text.strip().lstrip("+-").isascii() else None
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is invalid; allowed: an int in [{lo}, {hi}]{what}.")
        return value

    return parse


def real_in(lo: float, hi: float, note: str) -> Callable[[str], float]:
    """Return an argparse type: a finite number in [lo, hi]; `note` says what the ends mean."""
    def parse(text: str) -> float:
        try:
            value = float(text) if text.isascii() else math.nan
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is invalid; allowed: a finite number in [{lo:g}, {hi:g}] "
                                             f"({note}).")
        return value
    return parse


# argparse type: a finite guidance scale in [1, MAX_GUIDANCE] (1 turns classifier-free guidance off)
guidance = real_in(1.0, MAX_GUIDANCE, "1 turns classifier-free guidance off; 3-8 is usual")


def size(text: str) -> int:
    """argparse type: image height = width in pixels, a multiple of 8 in [8, MAX_SIZE]."""
    value = int_in(8, MAX_SIZE, " and a multiple of 8 (leave --size out for the model's own size)")(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; allowed: a multiple of 8 in [8, {MAX_SIZE}], "
                                         f"e.g. {max(8, value // 8 * 8)}.")
    return value


steps = int_in(1, MAX_STEPS, " (denoising steps; the scheduler may allow fewer)")
seed = int_in(0, MAX_SEED, " (the generator's range)")


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        import sys

        print(f"{self.prog}: error: {message.rstrip('.')}. See {self.prog} --help.", file=sys.stderr)
        sys.exit(2)
