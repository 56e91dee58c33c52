"""Model cards for controlnets/<name>/README.md: training data, condition, steps, seed, wall time, loss, table."""
from __future__ import annotations

import json
from pathlib import Path


DESCRIPTION = {
    "fashion-pixart-relevance12-edges": "TDSM control branch at all 12 blocks (2 channel groups each), trained only "
                                        "to measure control relevance per block (docs/control.md).",
    "fashion-pixart-controlnet-edges": "Full ControlNet baseline (PixArt-delta style): trainable copies of the "
                                       "first 6 of 12 base blocks, a zero-initialised linear after each.",
    "fashion-pixart-relactrl-edges": "RelaCtrl light branch: TDSM blocks at the most relevant positions, fewer "
                                     "(wider) channel groups where relevance is higher.",
    "fashion-pixart-tdsm-uniform-edges": "Ablation: the same number of TDSM blocks at evenly spaced positions, all "
                                         "with the same channel groups (no relevance placement or sizing).",
}


def card(name: str, training: dict, cfg: dict, table: str) -> str:
    shown = {k: v for k, v in cfg.items() if not k.startswith("_")}
    return f"""# {name}

{DESCRIPTION.get(name, '')}

Base: the embedded `fashion-pixart` (frozen). Load with
`DiffSkipPipeline.from_pretrained("fashion-pixart", control="controlnets/{name}")`, then
`pipe(prompt, control_image=edge_map, control_scale=1.0)` (docs/control.md).

| | |
|---|---|
| class | {cfg.get('_class_name', '?')} |
| config | `{json.dumps(shown)}` |
| parameters | {training.get('params')} |
| data | {training.get('n_train')} Fashion-MNIST train images (seeded subset), \
captions from the train templates, 10% dropped to "" |
| condition | {training.get('condition')}: thresholded Sobel magnitude (> 1.0 on [0, 1] gray), computed in torch |
| steps x batch | {training.get('steps')} x {training.get('batch_size')} \
(AdamW, lr {training.get('lr')}, warm-up 50, clip 1.0) |
| seed | {training.get('seed')} |
| device, wall time | {training.get('device')}, {training.get('wall_s')} s (one shared CPU core) |
| final loss | {training.get('final_loss')} (epsilon MSE, mean of the last 25 steps) |

## Measured (held-out test conditions)

{table}
"""


def write_cards(root: Path, result: dict | None = None) -> None:
    """Write README.md into every trained control folder under root (the table from docs/control_table.md)."""
    table_path = Path("docs/control_table.md")
    table = table_path.read_text() if table_path.exists() else "(not measured yet)"
    for folder in sorted(p for p in Path(root).iterdir() if (p / "training.json").exists()):
        training = json.loads((folder / "training.json").read_text())
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "README.md").write_text(card(folder.name, training, cfg, table))
