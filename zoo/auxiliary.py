"""Train the zoo's auxiliary models: CLIP, the VAE and the evaluation classifier."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from diffskip.metrics.classifier import FashionClassifier, accuracy
from . import export
from .data import caption_table, load_split, sample_caption_ids, to_float
from .loop import EMA, Run, train_loop
from .models import build_clip, build_vae
from .tokenizers import build_clip_tokenizer

log = logging.getLogger(__name__)


def train_data(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the train split as uint8 images and labels on a device."""
    images, labels = load_split("train")
    return images.to(device), labels.to(device)


def clip_step(run: Run, clip, images, labels, ids, mask, counts, offsets):
    """Return one step of the CLIP loss with class-aware soft targets."""
    def step(_: int) -> torch.Tensor:
        idx = torch.randint(0, len(images), (run.batch_size,), device=run.device)
        y = labels[idx]
        cap = sample_caption_ids(y, counts, offsets)
        with run.autocast():
            out = clip(input_ids=ids[cap], attention_mask=mask[cap],
                       pixel_values=to_float(images[idx]))
        logits = out.logits_per_image.float()  # (B, B)
        same = (y[:, None] == y[None, :]).float()
        target = same / same.sum(1, keepdim=True)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target.t()))
    return step


def train_clip(run: Run) -> dict:
    """Train CLIP contrastively on image/caption pairs and export it."""
    torch.manual_seed(run.seed)
    tok = build_clip_tokenizer()
    clip = build_clip(len(tok), tok.bos_token_id, tok.eos_token_id).to(run.device)
    texts, counts, offsets = caption_table()
    enc = tok(texts, padding="max_length", max_length=24, return_tensors="pt")
    ids, mask = enc.input_ids.to(run.device), enc.attention_mask.to(run.device)
    images, labels = train_data(run.device)
    step = clip_step(run, clip, images, labels, ids, mask, counts, offsets)
    info = train_loop(run, clip, step)
    info["vocab_size"] = len(tok)
    export.save_clip(clip, tok, run.out_dir / "fashion-clip")
    return info


def vae_step(run: Run, vae, images, kl_weight: float):
    """Return one step of the VAE loss (L1 + MSE reconstruction + weighted KL)."""
    def step(_: int) -> torch.Tensor:
        idx = torch.randint(0, len(images), (run.batch_size,), device=run.device)
        x = to_float(images[idx])
        with run.autocast():
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample.float()
        kl = post.kl().mean() / x[0].numel()
        return F.l1_loss(rec, x) + F.mse_loss(rec, x) + kl_weight * kl
    return step


@torch.no_grad()
def latent_stats(vae, images: torch.Tensor, device: str, n: int = 5000) -> dict:
    """Return reconstruction MSE and latent std (SD's scaling-factor recipe) on n images."""
    mses, zs = [], []
    for chunk in images[:n].split(500):
        x = to_float(chunk.to(device))
        post = vae.encode(x).latent_dist
        z = post.sample()
        zs.append(z.float().cpu())
        mses.append(F.mse_loss(vae.decode(post.mean).sample.float(), x).item())
    z = torch.cat(zs)
    return {"recon_mse": sum(mses) / len(mses), "latent_std": z.std().item(),
            "latent_mean": z.mean().item()}


def train_vae(run: Run) -> dict:
    """Train the AutoencoderKL, set its scaling factor from the latents and save it."""
    torch.manual_seed(run.seed)
    vae = build_vae().to(run.device)
    images, _ = train_data(run.device)
    info = train_loop(run, vae, vae_step(run, vae, images, kl_weight=1e-4), EMA(vae, 0.999))
    test, _ = load_split("test")
    stats = latent_stats(vae, test, run.device)
    vae.register_to_config(scaling_factor=round(1.0 / stats["latent_std"], 5))
    info.update(stats, scaling_factor=vae.config.scaling_factor)
    vae.save_pretrained(run.dir / "final")
    log.info("vae: %s", stats)
    return info


def classifier_step(run: Run, model, images, labels):
    """Return one cross-entropy step with random shifts and flips."""
    def step(_: int) -> torch.Tensor:
        idx = torch.randint(0, len(images), (run.batch_size,), device=run.device)
        x = to_float(images[idx])
        dx, dy = torch.randint(-2, 3, (2,)).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        if torch.rand(()) < 0.5:
            x = x.flip(3)
        with run.autocast():
            return F.cross_entropy(model(x).float(), labels[idx], label_smoothing=0.05)
    return step


def train_classifier(run: Run) -> dict:
    """Train the evaluation classifier and save it with its test accuracy."""
    torch.manual_seed(run.seed)
    model = FashionClassifier().to(run.device)
    images, labels = train_data(run.device)
    info = train_loop(run, model, classifier_step(run, model, images, labels))
    test_x, test_y = load_split("test")
    model.cpu()
    info["test_accuracy"] = accuracy(model, test_x, test_y)
    model.save_pretrained(run.out_dir / "fashion-classifier", {"test_accuracy": info["test_accuracy"]})
    log.info("classifier test accuracy %.4f", info["test_accuracy"])
    return info
