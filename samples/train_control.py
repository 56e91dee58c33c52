"""Train a control branch on the embedded fashion-pixart.

Usage: python samples/train_control.py {relevance,controlnet,relactrl,uniform}.
Resumes from runs/control/<name>/ckpt.pt; seeded; the budget is a fixed number of steps, the same for every model.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # zoo/ beside diffskip/

from zoo.control import KINDS, save, train_control  # noqa: E402
from zoo.loop import Run  # noqa: E402

NAMES = {"relevance": "fashion-pixart-relevance12-{}", "controlnet": "fashion-pixart-controlnet-{}",
         "relactrl": "fashion-pixart-relactrl-{}", "uniform": "fashion-pixart-tdsm-uniform-{}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--condition", default="edges", choices=["edges", "mask"])
    parser.add_argument("--steps", type=int, default=300, help="AdamW steps (the same for every model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=Path("runs/control"))
    parser.add_argument("--out", type=Path, default=Path("controlnets"))
    parser.add_argument("--plan", type=Path, default=Path("docs/control_relevance.json"),
                        help="relevance result with the relactrl / uniform placements")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    name = NAMES[args.kind].format(args.condition)
    plan = json.loads(args.plan.read_text())["plan"] if args.kind in ("relactrl", "uniform") else None
    run = Run(name, device=args.device, seed=args.seed, runs_dir=args.runs,
              batch_size=args.batch_size, lr=args.lr, warmup=50, ckpt_minutes=2.0, log_every=25)
    model, info = train_control(args.kind, run, args.steps, args.condition, plan)
    save(model, info, args.out / name)
    print(json.dumps({k: info[k] for k in ("model", "steps", "wall_s", "final_loss")}))


if __name__ == "__main__":
    main()
