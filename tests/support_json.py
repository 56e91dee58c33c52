"""Merge coverage and pipeline results into the support-matrix JSON (written only when asked, see ENV)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import diffusers
import torch

ENV = "DIFFSKIP_SUPPORT_JSON"  # path to write; unset (the default test run) writes nothing


def target() -> Path | None:
    """Return the JSON path the run was asked to write, or None."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def merge(path: Path, rows: list[dict] | None = None, pipelines: list[dict] | None = None) -> dict:
    """Merge this run's rows (by row id) or pipeline results (by pipeline name) into the JSON at `path`."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({"diffusers": diffusers.__version__, "torch": torch.__version__})
    if rows is not None:
        old = {r["id"]: r for r in data.get("rows", [])}
        old.update({r["id"]: r for r in rows})
        data["rows"] = sorted(old.values(), key=lambda r: r["id"])
    if pipelines is not None:
        old = {p["pipeline"]: p for p in data.get("pipelines", [])}
        old.update({p["pipeline"]: p for p in pipelines})
        data["pipelines"] = sorted(old.values(), key=lambda p: p["pipeline"])
    passed = {p["class"] for p in data.get("pipelines", []) if p.get("passed")}
    for r in data.get("rows", []):  # "pipeline" in tested: a real pipeline with this denoiser passed end to end
        r["tested"] = [x for x in r.get("tested", []) if x != "pipeline"] + (["pipeline"] if r["class"] in passed
                                                                            and r.get("covered") else [])
    classes: dict[str, bool] = {}  # in-scope class -> every row of it covered
    for r in data.get("rows", []):
        if r.get("in_scope"):
            classes[r["class"]] = classes.get(r["class"], True) and bool(r.get("covered"))
    data["summary"] = {"in_scope_classes": len(classes), "covered_classes": sum(classes.values()),
                       "out_of_scope_classes": len({r["class"] for r in data.get("rows", []) if not r.get("in_scope")})}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return data
