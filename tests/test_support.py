"""benchmarks.support renders the coverage JSON into docs/support.md: every row, counted, nothing by hand."""
from __future__ import annotations

import json

import pytest

from benchmarks.support import main, render

DATA = {"diffusers": "0.42.1", "torch": "2.13.0", "rows": [
    {"id": "Wan", "class": "WanTransformer3DModel", "family": "Wan", "in_scope": True, "covered": True,
     "reason": None, "tested": ["forward", "compile", "pipeline"],
     "adapter": {"source": "automatic", "lists": ["blocks"], "reuse": "residual",
                 "streams": {"blocks": "hidden_states"}, "units": 3, "timestep": "timestep"}},
    {"id": "Flux2", "class": "Flux2Transformer2DModel", "family": "FLUX.2", "in_scope": True, "covered": True,
     "reason": None, "tested": ["forward"],
     "adapter": {"source": "automatic", "lists": ["transformer_blocks", "single_transformer_blocks"],
                 "reuse": "residual", "units": 4, "streams": {
                     "transformer_blocks": ["encoder_hidden_states", "hidden_states"],
                     "single_transformer_blocks": "hidden_states"}}},
    {"id": "Mochi", "class": "MochiTransformer3DModel", "family": "Mochi", "in_scope": True, "covered": False,
     "reason": "no adapter: blocks | ran twice\nper call", "tested": ["forward"], "adapter": None},
    {"id": "Audio", "class": "StableAudioDiTModel", "family": None, "in_scope": False, "covered": False,
     "reason": "out of scope: audio", "tested": [], "adapter": None}],
    "pipelines": [{"pipeline": "WanPipeline", "class": "WanTransformer3DModel", "passed": True},
                  {"pipeline": "LattePipeline", "class": "LatteTransformer3DModel", "passed": False, "reason": None}]}


def test_render_lists_every_row_with_its_lists_streams_and_tests():
    md = render(DATA)
    assert "2 of 3 image and video denoiser classes covered (67%); 2 of them through automatic detection" in md
    assert "1 classes also ran inside a real diffusers pipeline, 1 with their units compiled" in md
    assert ("| `WanTransformer3DModel` | Wan | `blocks` (3 units) | residual | `hidden_states` | automatic | "
            "forward, compile, pipeline |") in md
    assert ("`transformer_blocks`: (`encoder_hidden_states`, `hidden_states`); "
            "`single_transformer_blocks`: `hidden_states`") in md
    assert "| `MochiTransformer3DModel` | Mochi | not covered: no adapter: blocks \\| ran twice per call |" in md
    assert md.index("MochiTransformer3DModel") < md.index("StableAudioDiTModel")  # out of scope last
    assert "| `WanPipeline` | `WanTransformer3DModel` | passed |" in md
    assert "| `LattePipeline` | `LatteTransformer3DModel` | failed |" in md
    assert md.count("\n| `") == 6  # four class rows and two pipeline rows


def test_main_writes_the_page_and_refuses_a_missing_json(tmp_path, capsys):
    src, out = tmp_path / "support.json", tmp_path / "support.md"
    with pytest.raises(SystemExit) as err:
        main(["--json", str(src), "--out", str(out)])
    assert err.value.code == 2 and "DIFFSKIP_SUPPORT_JSON=" in capsys.readouterr().err
    src.write_text(json.dumps(DATA))
    assert main(["--json", str(src), "--out", str(out)]) == 0
    assert out.read_text() == render(DATA)
