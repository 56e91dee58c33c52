"""Write model cards (README.md) for the exported zoo folders from the training summaries."""
from __future__ import annotations

import json
from pathlib import Path

from .data import EVAL_TEMPLATES, TRAIN_TEMPLATES

COMMON = """Data: Fashion-MNIST train split (60,000 images, MIT licence; Debian `dataset-fashion-mnist`),
zero-padded from 28x28 to 32x32, gray replicated to 3 channels. Captions are built from
{n_train} train templates x 3 phrasings per class; {n_eval} held-out templates are kept for evaluation.
Weights are stored in fp16 safetensors and load back in fp32. Measured quality: `docs/models.md`."""

CARDS = {
    "fashion-sd": ("Fashion-MNIST Stable Diffusion (UNet2DConditionModel)", ["clip", "vae", "unet"],
                   """```python
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained("diffskip/assets/fashion-sd")
image = pipe("a photo of a sneaker", num_inference_steps=25, guidance_scale=4.0).images[0]  # 32x32
```
Components: CLIPTextModel (3 layers, width 256, own BPE tokenizer), AutoencoderKL 32x32x3 <-> 4x8x8,
UNet2DConditionModel (64, 128, 128) with cross-attention, DDIMScheduler (steps_offset=1), no safety
checker. Trained with epsilon prediction, DDPM 1000 steps scaled_linear betas (0.00085-0.012), 10%
caption dropout to "" for classifier-free guidance, EMA 0.9995, bf16 autocast, AdamW.
Recommended sampling: 25 DDIM steps, guidance 4.0 (the stock call defaults, 50 steps and guidance 7.5,
also work)."""),
    "fashion-pixart": ("Fashion-MNIST PixArt-alpha (PixArtTransformer2DModel)", ["vae", "pixart"],
                       """```python
from diffusers import PixArtAlphaPipeline
pipe = PixArtAlphaPipeline.from_pretrained("diffskip/assets/fashion-pixart")
image = pipe("a photo of a dress", num_inference_steps=20, guidance_scale=4.0,
             use_resolution_binning=False, clean_caption=False).images[0]  # 32x32
```
Components: T5EncoderModel (2 layers, d_model 256, Unigram tokenizer of the caption words, trained
jointly with the transformer), the same AutoencoderKL, PixArtTransformer2DModel (12 blocks, 4 heads x 32,
patch 1 on 8x8 latents, no learned sigma), DPMSolverMultistepScheduler. Epsilon prediction, DDPM 1000
steps scaled_linear betas, 10% caption dropout, EMA 0.9995, bf16 autocast, AdamW.
Recommended sampling: 20 DPM-Solver++ steps (the stock default), guidance 4.0; 32x32 needs
`use_resolution_binning=False`, and `clean_caption=False` avoids the bs4/ftfy dependency."""),
    "fashion-clip": ("Fashion-MNIST CLIP", ["clip"],
                     """```python
from diffskip.metrics import make_clip_score   # torchmetrics CLIPScore on this model
```
CLIPModel: text tower 3 layers width 256 (max 77 positions), ViT 4 layers width 128 with 4x4 patches
on 32x32, projection 128. Contrastive loss with class-aware soft targets (captions of the same class are
positives), bf16 autocast, AdamW. Its text tower is the text encoder of `fashion-sd`."""),
    "fashion-classifier": ("Fashion-MNIST classifier", ["classifier"],
                           """```python
from diffskip.metrics import FashionClassifier
model = FashionClassifier.from_pretrained("diffskip/assets/fashion-classifier")  # input [-1, 1], 3x32x32
```
Six 3x3 conv layers (32, 64, 128) with BatchNorm, global average pooling, linear head. Random shifts and
flips, label smoothing 0.05. Used to measure prompt following of the generators."""),
}


def run_rows(summaries: dict, names: list[str]) -> str:
    """Return a markdown table of the training runs."""
    rows = ["| model | seed | steps | batch | lr | wall time (s) | device | final loss |",
            "|---|---|---|---|---|---|---|---|"]
    for name in names:
        s = summaries[name]
        rows.append(f"| {name} | {s['seed']} | {s['steps']} | {s['batch_size']} | {s['lr']} | "
                    f"{s['wall_s']} | {s['device']} | {s['final_loss']:.4f} |")
    return "\n".join(rows)


def write_cards(root: Path, summaries_file: Path) -> None:
    """Write README.md into each zoo folder under root."""
    summaries = json.loads(summaries_file.read_text())
    common = COMMON.format(n_train=len(TRAIN_TEMPLATES), n_eval=len(EVAL_TEMPLATES))
    for folder, (title, runs, body) in CARDS.items():
        extra = ""
        if "vae" in runs:
            v = summaries["vae"]
            extra += (f"\nVAE: reconstruction MSE {v['recon_mse']:.4f} (images in [-1, 1], test split), "
                      f"scaling_factor {v['scaling_factor']} = 1/std of posterior samples.\n")
        if "classifier" in runs:
            extra += f"\nTest accuracy (10,000 test images): {summaries['classifier']['test_accuracy']:.4f}\n"
        text = (f"# {title}\n\n{body}\n\n{common}\n{extra}\n## Training runs\n\n"
                f"{run_rows(summaries, runs)}\n\nReproduce: `python samples/train_fashion.py all "
                f"--device cuda --minutes 6` (then `unet`/`pixart` resumed to the wall times above), or "
                f"`python samples/train_fashion.py <model> --minutes M` per model on CPU (resumable).\n")
        (root / folder / "README.md").write_text(text)
