"""Policies: which cacheable units a denoiser step computes, as frozen, validated dataclasses.

A policy is a pure decision function of (step, unit, drift, streak) on the host; all state lives in the
session, so policies hash, print, serialise to one spec string (`str(policy)`) and parse back
(`parse(spec)`). `register_policy` adds a user's own policy to the spec syntax and the ComfyUI nodes.
"""
from __future__ import annotations

from ..errors import PolicyError
from .base import FINAL, FORECAST, MAX_SPEC, POLICIES, SHARED, Policy, StepInfo, register_policy
from .builtin import Interval, Mask, Never, Profile, Threshold, Uniform
from .spec import parse

__all__ = ["Policy", "Never", "Interval", "Uniform", "Profile", "Threshold", "Mask", "StepInfo", "parse", "POLICIES",
           "register_policy", "PolicyError", "SHARED", "FINAL", "FORECAST", "MAX_SPEC"]
