"""The README's worked register() example runs as written and prints what it says."""
import re
from pathlib import Path


def test_register_example_runs(capsys):
    text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    code = re.search(r"<!-- register-example -->\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "README-register-example", "exec"), {})
    out = capsys.readouterr().out
    assert "steps=4" in out and "computed=30 reused=10" in out


def readme_commands(text: str) -> list[list[str]]:
    """Return the `diffskip ...` commands of the README's bash blocks, in order, split like a shell would."""
    import shlex

    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.split("  #")[0])
                if words and words[0].endswith("diffskip"):
                    cmds.append(words[1:])
    return cmds


def test_the_readme_commands_run_in_order_in_one_folder_on_tiny_settings(tmp_path, monkeypatch, capsys):
    from diffskip.cli import main

    root = Path(__file__).resolve().parents[1]
    cmds = readme_commands(root.joinpath("README.md").read_text())
    assert len(cmds) >= 2 and cmds[0] == ["generate"]  # the quick start, then the control branch
    (tmp_path / "samples").symlink_to(root / "samples")
    monkeypatch.chdir(tmp_path)  # a fresh folder: nothing but the samples the commands name
    for argv in cmds:
        tiny = (["--steps", "2", "--prompt", "a coat", "--threads", "1", "--device", "cpu"] if argv[0] == "generate"
                else [])
        assert main([*argv, *tiny]) in (0, None), argv
        out = capsys.readouterr().out
        assert "wrote" in out and "PSNR vs baseline" in out, (argv, out)
    outs = [a[a.index("--out") + 1] if "--out" in a else "out/generate" for a in cmds]
    assert len(set(outs)) == len(outs)  # each example has its own output folder
