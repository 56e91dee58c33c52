"""Layout contracts: the runtime never imports research code, assets ship as package data, the CLI and the
public API import nothing heavy, and a user's own policy is a first-class citizen."""
import ast
import dataclasses
import fnmatch
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

import diffskip
from diffskip import assets, comfy
from diffskip.policies import POLICIES, Policy, StepInfo
from test_adapters import TOY, ToyNet

ROOT = Path(__file__).resolve().parents[1]


def test_runtime_never_imports_benchmarks_or_zoo():
    for path in (ROOT / "diffskip").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            assert not any(n.split(".")[0] in ("benchmarks", "zoo") for n in names), path


def test_every_asset_file_is_package_data_and_found_without_the_working_directory(tmp_path, monkeypatch):
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    root = ROOT / "diffskip" / "assets"
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    missing = [f for f in files if not f.endswith(".py") and not any(
        fnmatch.fnmatch(f, pat) or fnmatch.fnmatch(f, pat.replace("**/", "")) for pat in patterns["diffskip.assets"])]
    assert files and not missing
    monkeypatch.chdir(tmp_path)
    for name in assets.PIPELINES:
        assert (assets.path(name) / "model_index.json").is_file()
    with pytest.raises(diffskip.errors.AssetError, match="allowed"):
        assets.path("no-such-model")


def test_cli_help_and_import_load_no_torch():
    code = ("import sys, diffskip; from diffskip.cli import build_parser; build_parser(); "
            "print('torch' in sys.modules, len(diffskip.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False" and int(out[1]) <= 20  # a small public namespace (cache-dit exports 60+)


def test_a_users_policy_parses_prints_back_runs_and_is_a_comfyui_node():
    @diffskip.register_policy("every_other_late")
    @dataclasses.dataclass(frozen=True)
    class EveryOtherLate(Policy):
        """Compute every step until `after`, then every other step (a user's own policy)."""

        after: int = dataclasses.field(default=2, metadata={"range": (0, 1000), "tooltip": "first reusing step"})

        def decide(self, info: StepInfo, unit: int) -> bool:
            return info.step < self.after or info.step % 2 == 0

    try:
        _check_user_policy(EveryOtherLate)
    finally:  # leave the registry and the node list as the other tests expect them
        POLICIES.pop("every_other_late")
        importlib.reload(comfy)


def _check_user_policy(EveryOtherLate):
    p = diffskip.parse("every_other_late:after=3")
    assert p == EveryOtherLate(after=3) and str(p) == "every_other_late:after=3"
    net = diffskip.attach(ToyNet(depth=3), TOY)
    with diffskip.session(net, p, num_steps=5) as s:
        for t in (900.0, 800.0, 700.0, 600.0, 500.0):  # steps 0-2 compute, 3 reuses, 4 computes
            net(torch.randn(1, 3, 8), t)
    assert [c.computed for c in s.stats.calls] == [2, 2, 2, 0, 2]
    with pytest.raises(diffskip.errors.PolicyError,
                       match=r"after=-1 is invalid; allowed: a finite number in \[0, 1000\]"):
        diffskip.parse("every_other_late:after=-1")
    nodes = importlib.reload(comfy).NODE_CLASS_MAPPINGS
    assert "DiffSkipEveryOtherLate" in nodes and "after" in nodes["DiffSkipEveryOtherLate"].INPUT_TYPES()["required"]
    assert POLICIES["every_other_late"] is EveryOtherLate
    with pytest.raises(diffskip.errors.PolicyError, match="taken by"):
        diffskip.register_policy("interval")(EveryOtherLate)
