"""Write the zoo evaluation as docs/models.md, a JSON file and sample grids."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from zoo.data import CLASS_NAMES


def grid(images: torch.Tensor, per_class: int, stride: int, cols: int = 8) -> Image.Image:
    """Return a PNG grid: one row per class, the first cols images of each class block."""
    cols = min(cols, stride)
    rows = [images[c * stride: c * stride + cols] for c in range(len(CLASS_NAMES))]
    tiles = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # (3, 10*32, cols*32)
    return Image.fromarray(tiles.permute(1, 2, 0).numpy()).resize(
        (tiles.shape[2] * 2, tiles.shape[1] * 2), Image.NEAREST)


def table(results: dict) -> str:
    """Return the markdown table of the generators' metrics."""
    real = results["real"]
    rows = ["| pipeline | steps | guidance | prompt following (1000) | FID (2000 vs 2000) | "
            "CLIP score | generation s (2000, CPU) |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name == "real":
            continue
        rows.append(f"| {name} | {r['num_inference_steps']} | {r['guidance_scale']} | "
                    f"{r['prompt_accuracy']:.3f} | {r['fid']:.2f} | {r['clip_generated']:.2f} | "
                    f"{r['generation_s']} |")
    rows.append(f"| real test images, true captions | - | - | "
                f"{real['classifier_test_accuracy']:.3f} (classifier, 10k) | - | "
                f"{real['clip_true']:.2f} | - |")
    rows.append(f"| real test images, shuffled captions | - | - | - | - | {real['clip_shuffled']:.2f} | - |")
    return "\n".join(rows)


def per_class(results: dict) -> str:
    """Return the per-class prompt-following table."""
    names = [n for n in results if n != "real"]
    rows = ["| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for c in CLASS_NAMES:
        rows.append(f"| {c} | " + " | ".join(f"{results[n]['per_class'][c]:.2f}" for n in names) + " |")
    return "\n".join(rows)


def write_report(results: dict, docs: Path, n_fid: int, header: str = "") -> None:
    """Write docs/models.md, docs/zoo_eval.json and one grid PNG per pipeline."""
    docs.mkdir(parents=True, exist_ok=True)
    plain = {k: {kk: vv for kk, vv in v.items() if kk != "images"} for k, v in results.items()}
    (docs / "zoo_eval.json").write_text(json.dumps(plain, indent=2))
    pics = []
    for name, r in results.items():
        if "images" in r:
            grid(r["images"], n_fid // 10, n_fid // 10).save(docs / f"{name}-grid.png")
            pics.append(f"![{name}]({name}-grid.png)")
    text = (f"# Embedded Fashion-MNIST models: measured quality\n\n{header}\n\n{table(results)}\n\n"
            f"## Prompt following per class\n\n{per_class(results)}\n\n## Samples (rows: "
            f"{', '.join(CLASS_NAMES)})\n\n" + "\n".join(pics) + "\n")
    (docs / "models.md").write_text(text)
