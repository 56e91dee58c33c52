"""Train control branches on the embedded fashion-pixart (base frozen), through diffskip's own attach mechanism.

Data: N_TRAIN Fashion-MNIST train images (a seeded subset), captions drawn as the base was trained (train
templates, 10% dropped to ""), conditions computed in torch (diffskip.control.conditions). Latents and
condition latents are encoded once by the frozen VAE and cached under runs/control/.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline

from diffskip import assets
from diffskip.control.conditions import condition
from diffskip.control.inject import ControlRun, controlling
from diffskip.control.models import FullControlNetModel, RelaCtrlModel
from diffskip.engine import hooks

from .data import caption_table, load_split, sample_caption_ids, to_float
from .loop import Run, train_loop
from .models import BETAS

log = logging.getLogger(__name__)
N_TRAIN = 12000
DROP = 0.1
KINDS = ("relevance", "controlnet", "relactrl", "uniform")
TEXT_LEN = 16  # the base was trained on 16 T5 tokens


def load_base(device: str = "cpu"):
    """Return the embedded fashion-pixart pipeline, frozen, its transformer attached (no session)."""
    pipe = DiffusionPipeline.from_pretrained(str(assets.path("fashion-pixart"))).to(device)
    pipe.set_progress_bar_config(disable=True)
    for m in (pipe.transformer, pipe.vae, pipe.text_encoder):
        m.eval().requires_grad_(False)
    hooks.attach(pipe.transformer)
    return pipe


@torch.no_grad()
def prepare(pipe, cond_name: str, cache: Path, seed: int = 0) -> dict:
    """Return (and cache) latents mean/std, condition latents, labels and the T5 caption table."""
    path = cache / f"data-{cond_name}-{N_TRAIN}-{seed}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    images, labels = load_split("train")
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:N_TRAIN]
    images, labels = images[idx], labels[idx]
    vae, dev = pipe.vae, pipe.device
    mean, std, cz = [], [], []
    for chunk in images.split(500):
        post = vae.encode(to_float(chunk).to(dev)).latent_dist
        mean.append(post.mean.cpu())
        std.append(post.std.cpu())
        cz.append(vae.encode(condition(cond_name, chunk).to(dev)).latent_dist.mean.cpu())
    texts = caption_table()[0] + [""]
    enc = pipe.tokenizer(texts, padding="max_length", max_length=TEXT_LEN, truncation=True, return_tensors="pt")
    states = pipe.text_encoder(enc.input_ids.to(dev), attention_mask=enc.attention_mask.to(dev))[0].cpu()
    data = {"mean": torch.cat(mean), "std": torch.cat(std), "cond": torch.cat(cz), "labels": labels,
            "states": states, "mask": enc.attention_mask, "index": idx}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return data


def build(kind: str, pipe, seed: int, plan: dict | None = None) -> torch.nn.Module:
    """Return an untrained control model of a kind; relactrl/uniform read positions and groups from `plan`."""
    torch.manual_seed(seed)
    c = pipe.transformer.config
    dim, layers = c.num_attention_heads * c.attention_head_dim, c.num_layers
    if kind == "relevance":
        return RelaCtrlModel(dim=dim, num_layers=layers, positions=list(range(layers)), groups=[2] * layers, seed=seed)
    if kind == "controlnet":
        return FullControlNetModel.from_transformer(pipe.transformer)
    if kind in ("relactrl", "uniform"):
        if plan is None:
            raise ValueError(f"{kind} needs the relevance plan (docs/control_relevance.json); run relevance first.")
        p = plan[kind]
        return RelaCtrlModel(dim=dim, num_layers=layers, positions=p["positions"], groups=p["groups"], seed=seed)
    raise ValueError(f"kind={kind!r}; allowed: {list(KINDS)}.")


def train_control(kind: str, run: Run, steps: int, cond_name: str = "edges", plan: dict | None = None) -> tuple:
    """Train one control model for `steps` steps (resumable); return (model, summary)."""
    pipe = load_base(run.device)
    data = prepare(pipe, cond_name, run.runs_dir, seed=0)
    model = build(kind, pipe, run.seed, plan).to(run.device)
    tr, dev, scale = pipe.transformer, run.device, pipe.vae.config.scaling_factor
    alphas = DDPMScheduler(**BETAS).alphas_cumprod.to(dev)
    _, counts, offsets = caption_table()
    empty = int(counts.sum())
    d = {k: v.to(dev) for k, v in data.items()}

    def step(_: int) -> torch.Tensor:
        b = run.batch_size
        idx = torch.randint(0, len(d["mean"]), (b,), device=dev)
        z = (d["mean"][idx] + d["std"][idx] * torch.randn_like(d["mean"][idx])) * scale
        cap = sample_caption_ids(d["labels"][idx], counts, offsets)
        cap = torch.where(torch.rand(b, device=dev) < DROP, empty, cap)
        t = torch.randint(0, len(alphas), (b,), device=dev)
        noise = torch.randn_like(z)
        a = alphas[t].view(-1, 1, 1, 1)
        with torch.no_grad():
            cond = tr.pos_embed(d["cond"][idx] * scale)  # frozen patch + position embedding
        with controlling(tr, ControlRun(model, cond)):
            pred = tr(a.sqrt() * z + (1 - a).sqrt() * noise, encoder_hidden_states=d["states"][cap],
                      encoder_attention_mask=d["mask"][cap], timestep=t,
                      added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
        return F.mse_loss(pred, noise)

    run.extra.update({"kind": kind, "condition": cond_name, "n_train": N_TRAIN, "params": sum(
        p.numel() for p in model.parameters()), "config": dict(model.config)})
    info = train_loop(run, model, step, steps=steps)
    return model.cpu().eval(), info


def save(model, info: dict, out: Path) -> None:
    """Write the diffusers folder (config.json + safetensors) and the training summary beside it."""
    model.save_pretrained(str(out))
    (out / "training.json").write_text(json.dumps(info, indent=2, default=str))
