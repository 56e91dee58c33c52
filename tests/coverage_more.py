"""Tiny configs and inputs for the rest of diffusers' image and video denoisers (data for test_coverage.py)."""
from __future__ import annotations

import torch

from coverage_base import Case, R

CASES: list[Case] = []
