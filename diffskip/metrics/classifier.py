"""Small Fashion-MNIST CNN classifier and accuracy helper."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class FashionClassifier(nn.Module):
    """Six-conv CNN with global average pooling on 32x32x3 images in [-1, 1]."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), num_classes: int = 10) -> None:
        super().__init__()
        self.config = {"widths": list(widths), "num_classes": num_classes}
        layers: list[nn.Module] = []
        cin = 3
        for w in widths:
            for _ in range(2):
                layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                cin = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for images (B, 3, 32, 32) in [-1, 1]."""
        h = self.features(x)  # (B, C, 4, 4)
        return self.head(h.mean(dim=(2, 3)))

    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> None:
        """Save fp16 safetensors weights and config.json."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().half().contiguous() if v.is_floating_point() else v.contiguous()
                 for k, v in self.state_dict().items()}
        save_file(state, str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps({**self.config, **(extra or {})}, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "FashionClassifier":
        """Load a saved classifier in fp32 eval mode."""
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        model = cls(tuple(config["widths"]), config["num_classes"])
        state = {k: v.float() if v.is_floating_point() else v
                 for k, v in load_file(str(path / "model.safetensors")).items()}
        model.load_state_dict(state)
        return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Return predicted labels for uint8 (N, 3, 32, 32) or float [-1, 1] images."""
    preds = []
    for chunk in images.split(batch_size):
        x = chunk.float() / 127.5 - 1.0 if chunk.dtype == torch.uint8 else chunk.float()
        preds.append(model(x).argmax(dim=1).cpu())
    return torch.cat(preds)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Return the fraction of images classified as their label."""
    return (predict(model, images) == labels.cpu()).float().mean().item()


class ClassifierFeatures(nn.Module):
    """Map uint8 images (N, 3, 32, 32) to the classifier's pooled features: a fast FID feature space."""

    def __init__(self, classifier: FashionClassifier | str | Path) -> None:
        super().__init__()
        if not isinstance(classifier, nn.Module):
            path = Path(classifier)
            if not (path / "config.json").exists():
                raise FileNotFoundError(f"no classifier at {path} (config.json missing); pass the folder of a "
                                        "saved FashionClassifier, e.g. pipelines/fashion-classifier")
            classifier = FashionClassifier.from_pretrained(path)
        self.net = classifier.eval()
        self.num_features = classifier.config["widths"][-1]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return (N, C) features; images are uint8 in [0, 255]."""
        x = images.float() / 127.5 - 1.0
        return self.net.features(x).mean(dim=(2, 3)).double()
