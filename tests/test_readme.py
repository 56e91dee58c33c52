"""The README's worked register() example runs as written and prints what it says."""
import re
from pathlib import Path


def test_register_example_runs(capsys):
    text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    code = re.search(r"<!-- register-example -->\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "README-register-example", "exec"), {})
    out = capsys.readouterr().out
    assert "steps=4" in out and "computed=30 reused=10" in out
