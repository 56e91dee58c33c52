"""The coverage table's row type and helpers: build a tiny denoiser, call it, flatten its output."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

import diffusers


def R(*shape: int) -> torch.Tensor:
    """Return a standard-normal tensor (the caller seeds the global generator)."""
    return torch.randn(*shape)


@dataclass(frozen=True)
class Case:
    """One denoiser class in the coverage table: tiny config, input builder (timestep -> forward kwargs)."""

    cls: str
    family: str
    config: dict = field(default_factory=dict)
    inputs: Callable[[torch.Tensor], dict] | None = None
    variant: str = ""
    compile: bool = False  # in the sample of families checked with per-unit torch.compile
    reason: str | None = None  # set when the class is not covered: why
    init_std: float | None = None  # re-draw every parameter N(0, std): for classes that leave weights torch.empty
    steps: tuple[float, ...] = (999.0, 800.0, 600.0, 400.0, 200.0, 50.0)

    @property
    def id(self) -> str:
        return f"{self.cls}-{self.variant}" if self.variant else self.cls


def build(case: Case, seed: int = 0) -> nn.Module:
    """Build the case's model from its tiny config, deterministically, in eval mode."""
    torch.manual_seed(seed)
    model = getattr(diffusers, case.cls)(**case.config).eval()
    if case.init_std is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, case.init_std)
    return model


def kwargs_at(case: Case, t: float, seed: int = 1) -> dict:
    """Return the forward kwargs at timestep `t`; the same tensors at every step (seeded)."""
    torch.manual_seed(seed)
    return case.inputs(torch.tensor([t]))


def tensors(out: Any) -> list[torch.Tensor]:
    """Flatten a model output (ModelOutput, tuple, tensor, list) into its tensors, in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [x for item in out for x in tensors(item)]
    return []


def run_steps(model: nn.Module, case: Case) -> list[torch.Tensor]:
    """Call the model at each of the case's falling timesteps; return every output tensor of every step."""
    outs: list[torch.Tensor] = []
    with torch.no_grad():
        for t in case.steps:
            outs.extend(x.detach().clone() for x in tensors(model(**kwargs_at(case, t))))
    return outs
