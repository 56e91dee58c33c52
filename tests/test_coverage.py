"""Coverage of every image/video denoiser diffusers exports: build tiny, run 6 falling steps, cache, detach.

Per class: the plain forward runs; `never` is bit-exact to the plain model; `interval:every=2` runs fewer leaf
layers inside the cacheable units and stays finite; detach restores the plain model bitwise; for a sample of
families, units compiled with `compile(fullgraph=True, backend="eager")` before attach still work. Classes with no
adapter (explicit or detected) are recorded as not covered (xfail with the reason). Set DIFFSKIP_SUPPORT_JSON=<path>
to write the results for benchmarks/support.py.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import diffskip
from diffskip.adapters import describe, detect, find_adapter, resolve_units
from diffskip.errors import UnsupportedModelError

import support_json
from coverage_base import Case, build, kwargs_at, run_steps
from coverage_models import CASES, NAMED, OUT_OF_SCOPE, enumerated, in_scope

ROWS: dict[str, dict] = {}

# Classes whose inputs build and run but whose caching fails today, with why (the row records the actual error).
_FLEX = "flex attention does not run under the FLOP meter's dispatch mode (torch FlopCounterMode)"
KNOWN_GAPS: dict[str, str] = {  # strict: a gap that closes fails here, and its line must go
    "AnyFlowFARTransformer3DModel": _FLEX, "Kandinsky6SRTransformer3DModel": _FLEX,
    "BriaFibo2Transformer2DModel": "the FLOP meter's module tracker fails on its blocks (autograd graph hook)",
}


def _params(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=KNOWN_GAPS[c.id], strict=True)]
                         if c.id in KNOWN_GAPS else []) for c in cases]


@pytest.fixture(scope="module", autouse=True)
def _write_support():
    yield
    path = support_json.target()
    if path is not None:
        rows = list(ROWS.values()) + [dict(id=n, **{"class": n}, family=None, in_scope=False, covered=False,
                                           reason=f"out of scope: {why}", adapter=None, tested=[])
                                      for n, why in OUT_OF_SCOPE.items()]
        support_json.merge(path, rows=rows)


def _adapter(model: nn.Module, case: Case):
    """Return (adapter, source): the registered one, else the detected one where detection exists."""
    try:
        return find_adapter(model), "explicit"
    except UnsupportedModelError:
        return detect(model, probe=lambda: model(**kwargs_at(case, case.steps[0]))), "automatic"


def _describe(model: nn.Module, adapter, source: str) -> dict:
    return describe(model, adapter=None if source == "explicit" else adapter)


def _leaf_counter(units: list[nn.Module]) -> tuple[list[int], list]:
    """Count forward calls of every leaf module inside the units (a skipped unit runs none of its leaves)."""
    count, handles = [0], []
    for unit in units:
        for m in unit.modules():
            if not list(m.children()):
                handles.append(m.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1)))
    return count, handles


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _row(case: Case, **kw) -> dict:
    row = dict(id=case.id, **{"class": case.cls}, family=case.family, in_scope=True, covered=False, reason=None,
               adapter=None, tested=[])
    row.update(kw)
    ROWS[case.id] = row
    return row


def test_table_lists_every_enumerated_class_once():
    listed = {c.cls for c in CASES}
    assert sorted(set(enumerated()) - set(OUT_OF_SCOPE)) == sorted(in_scope())
    assert not listed & set(OUT_OF_SCOPE)
    assert sorted(set(in_scope()) - listed) == [], "add a Case (or a reason) for each new diffusers denoiser"
    assert len({c.id for c in CASES}) == len(CASES)


def test_table_has_a_buildable_row_for_every_family_the_issue_names():
    rows = {c.id: c for c in CASES}
    assert len(NAMED) == 35 and all(rows[i].reason is None and rows[i].inputs for i in NAMED.values())


@pytest.mark.parametrize("case", _params(CASES))
def test_class(case: Case):
    if case.reason:
        _row(case, reason=case.reason)
        pytest.xfail(f"not covered: {case.reason}")
    row = _row(case, reason="the plain forward failed")
    torch._dynamo.reset()  # flex-attention models compile lazily; a failure there must not leak into the next class
    model = build(case)
    plain = run_steps(model, case)
    assert plain and all(torch.isfinite(x).all() for x in plain)
    row.update(tested=["forward"], reason=None)
    try:
        adapter, source = _adapter(model, case)
    except UnsupportedModelError as e:
        row["reason"] = f"no adapter: {str(e).splitlines()[0][:160]}"
        pytest.xfail(row["reason"])
    try:
        _check_caching(model, adapter, case, plain)
    except Exception as e:  # recorded as the row's reason, then reported (a known gap is an xfail below)
        row["reason"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        raise
    row.update(covered=True, adapter=_describe(model, adapter, source))


def _check_caching(model: nn.Module, adapter, case: Case, plain: list[torch.Tensor]) -> None:
    """Never bitwise, interval:every=2 runs fewer leaf calls and stays finite, detach restores bitwise."""
    units = resolve_units(model, adapter)
    count, handles = _leaf_counter(units)
    diffskip.attach(model, adapter)
    try:
        with diffskip.session(model, diffskip.Never()):
            never = run_steps(model, case)
        full, count[0] = count[0], 0
        with diffskip.session(model, "interval:every=2", num_steps=len(case.steps)) as s:
            fast = run_steps(model, case)
    finally:
        diffskip.detach(model)
        for h in handles:
            h.remove()
    assert _same(plain, never), "never must be bit-exact to the plain model"
    assert 0 < count[0] < full, f"interval:every=2 ran {count[0]} leaf calls, never ran {full}"
    assert s.stats.reused > 0 and all(torch.isfinite(x).all() for x in fast)
    assert _same(plain, run_steps(model, case)), "detach must restore the plain model"


@pytest.mark.slow  # dynamo traces every unit: 3-10 s per family on one core
@pytest.mark.parametrize("case", _params([c for c in CASES if c.compile]))
def test_compiled_units_keep_working(case: Case):
    model = build(case)
    plain = run_steps(model, case)
    try:
        adapter, _ = _adapter(model, case)
    except UnsupportedModelError as e:
        pytest.xfail(f"no adapter: {str(e).splitlines()[0][:160]}")
    torch._dynamo.reset()
    for unit in resolve_units(model, adapter):
        unit.compile(fullgraph=True, backend="eager")
    diffskip.attach(model, adapter)
    try:
        with diffskip.session(model, diffskip.Never()):
            never = run_steps(model, case)
        with diffskip.session(model, "interval:every=2", num_steps=len(case.steps)) as s:
            fast = run_steps(model, case)
    finally:
        diffskip.detach(model)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-5) for a, b in zip(plain, never)) and len(plain) == len(never)
    assert s.stats.reused > 0 and all(torch.isfinite(x).all() for x in fast)
    if case.id in ROWS:
        ROWS[case.id]["tested"] = ROWS[case.id]["tested"] + ["compile"]
