"""Property-based tests: every policy spec, prompt-file row and CLI option either works or raises a diffskip
error with a message; never a traceback from inside torch or diffusers."""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diffskip
from diffskip.batch import MAX_SEED, read_prompts
from diffskip.cli import build_parser, main
from diffskip.errors import DiffSkipError
from diffskip.policies import POLICIES, Policy

KEYS = ["every", "start", "end", "speedup", "threshold", "warmup", "max_streak", "steps", "cycle", "head", "tail",
        "forecast", "evry", ""]
VALUES = st.one_of(st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                   st.sampled_from(["none", "None", "", "1e309", "٣", "３", "0x10", "1_000", "10101", "1" * 2000,
                                    " 2 "]),
                   st.text(max_size=12))
SPECS = st.one_of(
    st.text(max_size=40),
    st.builds(lambda name, items: name + ":" + ",".join(f"{k}={v}" for k, v in items),
              st.sampled_from(sorted(POLICIES) + ["Interval", " mask", "nope"]),
              st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4)))
FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FAST
@given(SPECS)
def test_any_policy_spec_parses_and_round_trips_or_raises_a_diffskip_error(spec):
    try:
        p = diffskip.parse(spec)
    except DiffSkipError as exc:
        assert 0 < len(str(exc)) < 600  # the echo of a huge value is capped
        return
    assert isinstance(p, Policy) and diffskip.parse(str(p)) == p
    for f in ("head", "tail"):
        v = getattr(p, f)
        assert v is None or 0 <= v <= 64
    for v in vars(p).values():
        assert not (isinstance(v, float) and not math.isfinite(v))


ROW = st.one_of(
    st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.dictionaries(st.sampled_from(["prompt", "seed", "negative_prompt", "width", "height", "colour"]),
                    st.one_of(st.integers(-2**70, 2**70), st.text(max_size=8), st.none(), st.booleans(),
                              st.floats(allow_nan=False), st.lists(st.integers(), max_size=2)),
                    max_size=5).map(lambda d: json.dumps(d).encode()))


@FAST
@given(st.lists(ROW, max_size=8), st.sampled_from([".txt", ".jsonl"]), st.integers(0, MAX_SEED))
def test_any_prompt_file_gives_good_rows_and_file_line_errors_never_an_exception(tmp_path_factory, lines, suffix, seed):
    path = tmp_path_factory.mktemp("p") / f"p{suffix}"
    path.write_bytes(b"\n".join(lines))
    rows, bad = read_prompts(path, base_seed=seed)
    indices = [r.index for r in rows] + [b.index for b in bad]
    assert len(indices) == len(set(indices))
    for r in rows:
        assert r.prompt.strip() and 0 <= r.seed <= MAX_SEED
        assert all(v is None or (8 <= v <= 2048 and v % 8 == 0) for v in (r.width, r.height))
    for b in bad:
        assert b.where.startswith(f"{path}:") and b.where.rsplit(":", 1)[1].isdigit() and b.problem


OPTION = st.sampled_from(["--steps", "--size", "--guidance", "--seed", "--batch-size", "--per-prompt", "--cols",
                          "--cell", "--policy", "--threads"])
RAW = st.one_of(st.integers(-10**25, 10**25).map(str), st.floats().map(str), st.text(max_size=10),
                st.sampled_from(["nan", "inf", "-0", "1e3", "٣", "0", "8", "64", "mask:steps=11"]))


@FAST
@given(st.lists(st.tuples(OPTION, RAW), min_size=1, max_size=3))
def test_any_option_value_parses_into_range_or_fails_in_one_line_with_exit_2(capsys, pairs):
    argv = ["generate"] + [x for k, v in pairs for x in (k, v)]
    capsys.readouterr()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        err = capsys.readouterr().err
        assert exc.code == 2 and len(err.strip().splitlines()) == 1 and "error:" in err
        return
    assert args.steps is None or 1 <= args.steps <= 10_000  # None: the --plan's steps, else 25
    assert 0 <= args.seed <= MAX_SEED and math.isfinite(args.guidance)
    assert 1 <= args.guidance <= 100 and (args.size is None or (8 <= args.size <= 2048 and args.size % 8 == 0))
    assert 1 <= args.batch_size and 1 <= args.per_prompt


TINY_UNITS = 20  # counted unit evaluations per denoiser call and guidance branch on tiny-sd (22 units, tail 2)


def _expected_refusal(steps: int, policy: str) -> str | None:
    """Return the message a valid-looking combination must be refused with (None: it must run)."""
    if policy.startswith("mask:steps=1011") and steps != 4:
        return f"has 4 characters but the run has {steps} steps"
    if "head=30" in policy:
        return "head=30 + tail=2 exceeds the 22 units"
    return None


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(steps=st.integers(1, 4), size=st.sampled_from([None, 8, 16, 24, 40, 64, 72]),
       guidance=st.sampled_from(["1", "4.5", "100"]),
       policy=st.sampled_from(["never", "interval:every=2", "uniform:speedup=3", "threshold:threshold=0.05",
                               "mask:steps=1011", "mask:steps=10,cycle=1", "interval:every=2,head=30",
                               "interval:every=1,forecast=1", "uniform:speedup=2,tail=5"]))
def test_valid_options_produce_the_pinned_result_on_a_model(tmp_path_factory, capsys, steps, size, guidance, policy):
    from PIL import Image

    out = tmp_path_factory.mktemp("g")
    capsys.readouterr()
    argv = ["generate", "--model", "tiny-sd", "--device", "cpu", "--steps", str(steps), "--guidance", guidance,
            "--policy", policy, "--prompt", "a", "--out", str(out), "--no-baseline", "--overwrite"]
    argv += ["--size", str(size)] if size else []
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    refusal = _expected_refusal(steps, policy)
    if refusal is not None:  # exactly the refusals the rules call for, in one line, and nothing written
        assert status == 2 and refusal in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not (out / "stats.json").exists()
        return
    assert status == 0, err
    st_ = json.loads((out / "stats.json").read_text())["stats"]
    branches = 1 if guidance == "1" else 2  # classifier-free guidance runs a cond and an uncond branch
    spec = diffskip.parse(policy)  # head/tail units always compute and are not counted; defaults: head 0
    # threshold: its probe is its head
    head = spec.head if spec.head is not None else (1 if policy.startswith("threshold") else 0)
    units = TINY_UNITS + 2 - head - (spec.tail if spec.tail is not None else 2)  # 22 units, default tail 2
    total = units * steps * branches
    assert st_["steps"] == steps and st_["computed"] + st_["reused"] == total
    assert st_["computed"] >= units * branches * min(steps, 2)  # the first and the final step compute
    assert 0 < st_["flops_fraction"] <= 1
    if policy in ("never", "interval:every=1,forecast=1") or steps <= 2:
        assert st_["reused"] == 0 and st_["flops_fraction"] == 1.0
    if policy.startswith("mask:steps=1011"):
        assert st_["reused"] == TINY_UNITS * branches  # step 1 replays, steps 0, 2 and 3 compute
    with Image.open(out / "000.png") as im:
        assert im.size == (size or 16, size or 16)  # tiny-sd's own size is 16
