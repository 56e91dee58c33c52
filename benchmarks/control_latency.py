"""Latency of the control rows, interleaved (round-robin, fastest of each) so a shared CPU's load drifts out.

Updates call_seconds (one guidance-batch denoiser call, 2 x 50) and seconds (20 images x 10 steps through
DiffSkipPipeline) in docs/control_table.json and rewrites docs/control_table.md. Run after control_table.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from benchmarks.control_eval import Judge, generate
from benchmarks.control_table import ROWS, call_seconds, markdown
from diffskip import DiffSkipPipeline
from diffskip.control.inject import load_control
from zoo.control import load_base


def main(rounds: int = 3, n: int = 20, root: Path = Path("controlnets"), out: Path = Path("docs")) -> None:
    torch.set_num_threads(1)
    pipe = load_base()
    judge = Judge(n * 5)  # conditions of the table; the first n are timed
    tokens = judge.tokens(pipe)
    models = {folder: load_control(root / folder) for _, folder, _ in ROWS if folder}
    pipes = [DiffSkipPipeline(pipe, policy, control=models.get(folder)) for _, folder, policy in ROWS]
    call, gen = [float("inf")] * len(ROWS), [float("inf")] * len(ROWS)
    for _ in range(rounds):
        for i, (name, folder, policy) in enumerate(ROWS):
            call[i] = min(call[i], call_seconds(pipe, models.get(folder), tokens, repeats=3))
            extra = {} if folder is None else {"control_image": (judge.cond_images[:n] + 1) / 2}
            start = time.perf_counter()
            generate(pipes[i], judge.prompts[:n], 0, **extra)
            gen[i] = min(gen[i], time.perf_counter() - start)
    result = json.loads((out / "control_table.json").read_text())
    for row, c, g in zip(result["rows"], call, gen):
        row["call_seconds"], row["seconds"] = c, g
    result["latency"] = f"interleaved, fastest of {rounds} rounds; generation: {n} images x 10 steps"
    (out / "control_table.json").write_text(json.dumps(result, indent=1))
    (out / "control_table.md").write_text(markdown(result["rows"], result["n_images"], result["seeds"]) +
                                          f"Latency {result['latency']}, one shared CPU core.\n")


if __name__ == "__main__":
    main()
