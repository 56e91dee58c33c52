"""Offline tests of the committed Fashion-MNIST zoo: pipelines load with stock classes and generate."""
from __future__ import annotations


import pytest
import torch

from diffskip.metrics.classifier import FashionClassifier
from diffskip.assets import path as asset_path
from zoo.data import CLASS_NAMES, caption_table, eval_prompts, load_split
from zoo.tokenizers import build_clip_tokenizer, build_t5_tokenizer

ROOT = asset_path("fashion-sd").parent
torch.set_num_threads(1)


def have_data() -> bool:
    """Return whether the Fashion-MNIST files are installed."""
    try:
        from zoo.data import find_file
        find_file("t10k-labels-idx1-ubyte.gz")
        return True
    except FileNotFoundError:
        return False


def test_sd_pipeline_generates_with_cfg():
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(ROOT / "fashion-sd")
    assert len(pipe.tokenizer) == len(build_clip_tokenizer())
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.dtype == torch.float32
    out = pipe(["a photo of a sneaker"], num_inference_steps=2, guidance_scale=4.0,
               generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 32, 32, 3)
    assert 0.0 <= out.images.min() and out.images.max() <= 1.0


def test_pixart_pipeline_generates_with_cfg():
    from diffusers import PixArtAlphaPipeline
    pipe = PixArtAlphaPipeline.from_pretrained(ROOT / "fashion-pixart")
    assert len(pipe.tokenizer) == len(build_t5_tokenizer())
    assert len(pipe.transformer.transformer_blocks) >= 12
    out = pipe("a photo of a dress", num_inference_steps=2, guidance_scale=4.0,
               use_resolution_binning=False, clean_caption=False,
               generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_clip_loads_and_scores():
    from diffskip.metrics.clipscore import clip_loader
    model, processor = clip_loader(ROOT / "fashion-clip")()
    assert len(processor.tokenizer) == len(build_clip_tokenizer())
    inputs = processor(text=["a photo of a bag", ""], return_tensors="pt", padding=True)
    feats = model.get_text_features(inputs.input_ids, inputs.attention_mask)
    assert feats.shape == (2, model.config.projection_dim)


def test_classifier_loads():
    model = FashionClassifier.from_pretrained(ROOT / "fashion-classifier")
    logits = model(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, len(CLASS_NAMES))


def test_captions_and_prompts():
    texts, counts, _ = caption_table()
    held_out, _, _ = caption_table(held_out=True)
    assert len(texts) == int(counts.sum()) and not set(texts) & set(held_out)
    prompts, labels = eval_prompts(per_class=3)
    assert len(prompts) == 30 and labels[:3] == [0, 0, 0]


def test_tokenizers_cover_caption_words():
    tok = build_clip_tokenizer()
    assert tok.tokenize("a photo of an ankle boot") == ["a</w>", "photo</w>", "of</w>", "an</w>",
                                                        "ankle</w>", "boot</w>"]
    t5 = build_t5_tokenizer()
    assert t5("a photo of a bag").input_ids[-1] == t5.eos_token_id
    assert t5.unk_token_id not in t5("a photo of a bag").input_ids


@pytest.mark.skipif(not have_data(), reason="dataset-fashion-mnist not installed")
def test_data_loader_shapes():
    images, labels = load_split("test")
    assert images.shape == (10000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and int(labels.max()) == 9
    assert int(images[:, :, :2].max()) == 0  # zero padding around the 28x28 garment
