"""Train the latent denoisers: the SD UNet on frozen CLIP text, PixArt jointly with its T5."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from transformers import CLIPModel, CLIPTextModel

from . import export
from .data import caption_table, load_split, sample_caption_ids, to_float
from .loop import EMA, Run, train_loop
from .models import BETAS, build_pixart, build_t5, build_unet
from .tokenizers import build_t5_tokenizer

log = logging.getLogger(__name__)
DROP = 0.1  # caption dropout to the empty prompt, for classifier-free guidance


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return posterior mean and std of every train image (N, 4, 8, 8) on the device."""
    images, _ = load_split("train")
    means, stds = [], []
    for chunk in images.split(1000):
        post = vae.encode(to_float(chunk.to(device))).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


def load_vae(run: Run) -> AutoencoderKL:
    """Load the trained VAE from its run folder."""
    return AutoencoderKL.from_pretrained(run.runs_dir / "vae" / "final").to(run.device).eval()


class LatentBatches:
    """Draw (scaled latents, labels, caption ids with dropout, noisy latents, noise, t)."""

    def __init__(self, run: Run, vae: AutoencoderKL) -> None:
        self.run, self.scale = run, vae.config.scaling_factor
        self.mean, self.std = encode_latents(vae, run.device)
        self.labels = load_split("train")[1].to(run.device)
        _, self.counts, self.offsets = caption_table()
        self.empty = int(self.counts.sum())  # index of "" appended after the captions
        self.sched = DDPMScheduler(**BETAS)
        self.alphas = self.sched.alphas_cumprod.to(run.device)

    def __call__(self) -> tuple[torch.Tensor, ...]:
        """Return one training batch."""
        b, dev = self.run.batch_size, self.run.device
        idx = torch.randint(0, len(self.mean), (b,), device=dev)
        z = (self.mean[idx] + self.std[idx] * torch.randn_like(self.mean[idx])) * self.scale
        cap = sample_caption_ids(self.labels[idx], self.counts, self.offsets)
        cap = torch.where(torch.rand(b, device=dev) < DROP, self.empty, cap)
        t = torch.randint(0, len(self.alphas), (b,), device=dev)
        noise = torch.randn_like(z)
        a = self.alphas[t].view(-1, 1, 1, 1)
        return a.sqrt() * z + (1 - a).sqrt() * noise, noise, t, cap


@torch.no_grad()
def clip_text_table(run: Run) -> tuple[torch.Tensor, CLIPTextModel, object]:
    """Return the frozen CLIP text states of every train caption plus "" (77 tokens, as SD)."""
    clip_dir = run.out_dir / "fashion-clip"
    tok = export.load_clip_tokenizer(clip_dir)
    clip = CLIPModel.from_pretrained(clip_dir, dtype=torch.float32)
    text = CLIPTextModel(clip.config.text_config)
    text.load_state_dict(clip.text_model.state_dict())  # same modules as CLIPModel.text_model
    text = text.to(run.device).eval()
    texts = caption_table()[0] + [""]
    ids = tok(texts, padding="max_length", max_length=77, truncation=True,
              return_tensors="pt").input_ids.to(run.device)
    return text(ids)[0].float(), text, tok  # (n_captions + 1, 77, 256)


def train_unet(run: Run) -> dict:
    """Train the UNet (epsilon prediction) and export the StableDiffusionPipeline folder."""
    torch.manual_seed(run.seed)
    vae = load_vae(run)
    batches = LatentBatches(run, vae)
    table, text_encoder, tok = clip_text_table(run)
    unet = build_unet().to(run.device)

    def step(_: int) -> torch.Tensor:
        noisy, noise, t, cap = batches()
        with run.autocast():
            pred = unet(noisy, t, table[cap]).sample
        return F.mse_loss(pred.float(), noise)

    info = train_loop(run, unet, step, EMA(unet, 0.9995))
    export.save_sd(run.out_dir / "fashion-sd", vae.cpu(), text_encoder.cpu(), tok, unet.cpu())
    return info


class PixArtWithT5(torch.nn.Module):
    """PixArt transformer and its T5 encoder trained as one module."""

    def __init__(self, transformer, t5) -> None:
        super().__init__()
        self.transformer, self.t5 = transformer, t5

    def forward(self, noisy, t, ids, mask) -> torch.Tensor:
        """Return the noise prediction (B, 4, 8, 8) for token ids (B, L)."""
        states = self.t5(input_ids=ids, attention_mask=mask)[0]  # (B, L, 256)
        return self.transformer(noisy, encoder_hidden_states=states, encoder_attention_mask=mask,
                                timestep=t, added_cond_kwargs={"resolution": None,
                                                               "aspect_ratio": None}).sample


def train_pixart(run: Run) -> dict:
    """Train PixArt with its T5 encoder (epsilon prediction) and export the pipeline folder."""
    torch.manual_seed(run.seed)
    vae = load_vae(run)
    batches = LatentBatches(run, vae)
    tok = build_t5_tokenizer()
    enc = tok(caption_table()[0] + [""], padding="max_length", max_length=16,
              return_tensors="pt")
    ids, mask = enc.input_ids.to(run.device), enc.attention_mask.to(run.device)
    model = PixArtWithT5(build_pixart(), build_t5(len(tok))).to(run.device)

    def step(_: int) -> torch.Tensor:
        noisy, noise, t, cap = batches()
        with run.autocast():
            pred = model(noisy, t, ids[cap], mask[cap])
        return F.mse_loss(pred.float(), noise)

    info = train_loop(run, model, step, EMA(model, 0.9995))
    info["vocab_size"] = len(tok)
    export.save_pixart(run.out_dir / "fashion-pixart", vae.cpu(), model.t5.cpu(), tok,
                       model.transformer.cpu())
    return info
