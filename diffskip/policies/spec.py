"""Spec strings: `parse('interval:every=3,start=2')` reads what `str(policy)` prints."""
from __future__ import annotations

import dataclasses
import typing

from ..errors import PolicyError, short
from .base import MAX_SPEC, POLICIES, Policy, _fmt

__all__ = ["parse"]


def _convert(policy: str, field: dataclasses.Field, hint, raw: str):
    if raw.lower() == "none" and type(None) in typing.get_args(hint):
        return None
    base = next((t for t in (typing.get_args(hint) or (hint,)) if t is not type(None)), str)
    try:
        if base in (int, float) and not raw.isascii():  # int() would take full-width or Arabic-Indic digits
            raise ValueError(raw)
        if base is int:
            return int(raw)
        if base is float:
            return float(raw)
        return raw
    except ValueError:
        raise PolicyError(f"{policy}: {field.name}={short(raw)} is not a valid {base.__name__} (ASCII digits); "
                          f"write e.g. {policy}:{field.name}={_fmt(field.default)}.") from None


def parse(spec: str | Policy) -> Policy:
    """Parse a spec string like 'interval:every=3,start=2' (or pass a Policy through)."""
    if isinstance(spec, Policy):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise PolicyError(f"policy spec {short(spec)} is not a non-empty string; allowed names: {sorted(POLICIES)}.")
    if len(spec) > MAX_SPEC:
        raise PolicyError(f"policy spec {short(spec)} is too long; allowed: at most {MAX_SPEC} characters.")
    name, _, rest = spec.strip().partition(":")
    cls = POLICIES.get(name.strip().lower())
    if cls is None:
        raise PolicyError(f"unknown policy {short(name)}; allowed: {sorted(POLICIES)} (e.g. 'interval:every=3').")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if key not in fields or not eq:
            raise PolicyError(f"{cls.name}: bad option {short(item)}; allowed keys: {sorted(fields)} as key=value.")
        if key in kwargs:
            raise PolicyError(f"{cls.name}: {key}= given twice in {short(spec)}; allowed: each key once.")
        kwargs[key] = _convert(cls.name, fields[key], hints[key], raw.strip())
    return cls(**kwargs)
