"""Fashion-MNIST idx loader (32x32, 3 channels) and caption templates."""
from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import torch

DATA_DIRS = (Path("data"), Path("/usr/share/datasets/fashion-mnist"))
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Words used in captions for each class (first one is the canonical phrase).
CLASS_PHRASES = (
    ("t-shirt", "top", "tee"),
    ("pair of trousers", "pair of pants", "pair of jeans"),
    ("pullover", "sweater", "jumper"),
    ("dress", "gown", "frock"),
    ("coat", "jacket", "overcoat"),
    ("sandal", "summer sandal", "strappy sandal"),
    ("shirt", "button-up shirt", "blouse"),
    ("sneaker", "running shoe", "trainer"),
    ("bag", "handbag", "purse"),
    ("ankle boot", "boot", "short boot"),
)
TRAIN_TEMPLATES = (
    "a photo of a {}", "a {}", "an image of a {}", "a {}, product shot",
    "a picture of a {}", "a grayscale photo of a {}", "a {} on a black background",
    "a catalog photo of a {}", "a small photo of a {}", "a {} for sale",
    "a low resolution photo of a {}", "fashion item: {}",
)
EVAL_TEMPLATES = (
    "a studio photo of a {}", "a {}, centered", "a black and white image of a {}",
    "a clothing photo of a {}",
)


def find_file(name: str) -> Path:
    """Return the path of a Fashion-MNIST idx file from the first data dir holding it."""
    for root in DATA_DIRS:
        path = root / name
        if path.exists():
            return path
    raise FileNotFoundError(
        f"{name} not found in {[str(d) for d in DATA_DIRS]}; "
        "run `apt-get install dataset-fashion-mnist` or copy the .gz files into data/"
    )


def read_idx(name: str, offset: int) -> np.ndarray:
    """Read the uint8 payload of a gzipped idx file."""
    with gzip.open(find_file(name), "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


def load_split(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Load a split as uint8 images (N, 3, 32, 32) zero-padded from 28x28 and int64 labels (N,)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    labels = torch.from_numpy(read_idx(f"{prefix}-labels-idx1-ubyte.gz", 8).astype(np.int64))
    images = torch.from_numpy(read_idx(f"{prefix}-images-idx3-ubyte.gz", 16).copy())
    images = images.view(-1, 1, 28, 28)
    images = torch.nn.functional.pad(images, (2, 2, 2, 2))  # (N, 1, 32, 32)
    return images.expand(-1, 3, -1, -1).contiguous(), labels


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Map uint8 images to float in [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Map float images in [-1, 1] to uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)



def fill(template: str, phrase: str) -> str:
    """Fill a template and fix the indefinite article."""
    text = template.format(phrase)
    vowel = phrase[0] in "aeiou"
    if vowel:
        text = text.replace(f"a {phrase}", f"an {phrase}")
    return text


def captions_for(label: int, held_out: bool = False) -> list[str]:
    """Return every caption of a class for the train (or held-out eval) templates."""
    templates = EVAL_TEMPLATES if held_out else TRAIN_TEMPLATES
    return [fill(t, p) for t in templates for p in CLASS_PHRASES[label]]


def all_captions(held_out: bool = False) -> list[list[str]]:
    """Return the caption lists of all ten classes."""
    return [captions_for(c, held_out) for c in range(len(CLASS_NAMES))]


def eval_prompts(per_class: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Return per_class held-out prompts per class (class-major order) and their labels."""
    rng = random.Random(seed)
    prompts, labels = [], []
    for label, caps in enumerate(all_captions(held_out=True)):
        prompts += [rng.choice(caps) for _ in range(per_class)]
        labels += [label] * per_class
    return prompts, labels


def caption_table(held_out: bool = False) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Flatten captions to (texts, class index per text, offsets per class) for fast sampling."""
    texts, owner = [], []
    for label, caps in enumerate(all_captions(held_out)):
        texts += caps
        owner += [label] * len(caps)
    counts = torch.bincount(torch.tensor(owner), minlength=len(CLASS_NAMES))
    offsets = torch.cumsum(counts, 0) - counts
    return texts, counts, offsets


def sample_caption_ids(labels: torch.Tensor, counts: torch.Tensor, offsets: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one caption index of the right class per label."""
    u = torch.rand(labels.shape, generator=generator, device=labels.device)
    c, o = counts.to(labels.device)[labels], offsets.to(labels.device)[labels]
    return o + (u * c).long().clamp(max=c - 1)
