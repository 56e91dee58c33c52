"""Analytic step skipping: the closed-form probability-flow solution for Gaussian data (Wang & Vastola).

For x0 ~ N(mu, U diag(lam) U^T + rho (I - U U^T)) and x_t = a_t x0 + s_t eps, the probability-flow ODE keeps
each whitened eigen-coordinate constant, so from (a_T, s_T) to (a_t, s_t):
    x_t = a_t mu + sum_k sqrt((a_t^2 lam_k + s_t^2) / (a_T^2 lam_k + s_T^2)) u_k u_k^T (x_T - a_T mu)
          + sqrt((a_t^2 rho + s_t^2) / (a_T^2 rho + s_T^2)) P_perp (x_T - a_T mu)
("The Unreasonable Effectiveness of Gaussian Score Approximation", analytical teleportation).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["GaussianStats", "GaussianSkip", "StatsShapeError", "conditional_mean", "gaussian_jump", "gaussian_x0"]


class StatsShapeError(ValueError):
    """The Gaussian statistics were fitted for a different latent shape than the pipeline produces."""


@dataclass
class GaussianStats:
    """Mean and low-rank covariance of the latents the scheduler sees (after VAE scaling / shift), float64.

    Args:
        mean: (D,) data mean.
        eigvecs: (D, r) orthonormal top-r eigenvectors of the covariance.
        eigvals: (r,) their eigenvalues, descending.
        residual: variance per direction on the complement of the eigenvectors (mean of discarded eigenvalues).
        shape: latent shape (C, H, W) the statistics were fitted in; D = C * H * W.
        meta: provenance (source, pipeline, n_samples, scaling_factor, ...), saved to the JSON.
    """

    mean: torch.Tensor
    eigvecs: torch.Tensor
    eigvals: torch.Tensor
    residual: float
    shape: tuple[int, ...]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean, self.eigvecs, self.eigvals = (t.to(torch.float64) for t in (self.mean, self.eigvecs, self.eigvals))
        self.shape = tuple(int(v) for v in self.shape)
        d = 1
        for v in self.shape:
            d *= v
        if self.mean.shape != (d,) or self.eigvecs.shape[0] != d or self.eigvecs.shape[1] != self.eigvals.shape[0]:
            raise ValueError(f"inconsistent Gaussian statistics: shape {self.shape} (D={d}), mean "
                             f"{tuple(self.mean.shape)}, eigvecs {tuple(self.eigvecs.shape)}, eigvals "
                             f"{tuple(self.eigvals.shape)}; expected (D,), (D, r), (r,).")
        if self.residual < 0 or bool((self.eigvals < 0).any()):
            raise ValueError(f"variances must be >= 0; got residual {self.residual}, min eigval "
                             f"{float(self.eigvals.min())}.")

    @property
    def rank(self) -> int:
        return int(self.eigvals.numel())

    @classmethod
    def from_latents(cls, latents: torch.Tensor, rank: int, meta: dict | None = None) -> GaussianStats:
        """Fit mean and top-`rank` covariance eigenpairs (plus residual variance) to latents (N, C, H, W)."""
        x = latents.reshape(len(latents), -1).to(torch.float64)
        d = x.shape[1]
        if not 1 <= rank <= d or len(x) < 2:
            raise ValueError(f"rank must be in [1, {d}] and at least 2 latents are needed; got rank {rank}, "
                             f"{len(x)} latents.")
        mean = x.mean(0)
        cov = torch.cov(x.T).reshape(d, d)
        vals, vecs = torch.linalg.eigh(cov)  # ascending
        vals, vecs = vals.flip(0).clamp_min(0), vecs.flip(1)
        residual = float(vals[rank:].mean()) if rank < d else 0.0
        info = {"n_samples": len(x), **(meta or {})}
        return cls(mean, vecs[:, :rank], vals[:rank], residual, tuple(latents.shape[1:]), info)

    def save(self, path: str | Path) -> None:
        """Write `<path>.safetensors` (float32 tensors) and `<path>.json` (shape, residual, meta)."""
        from safetensors.torch import save_file

        path = Path(path).with_suffix("")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"mean": self.mean.float().contiguous(), "eigvecs": self.eigvecs.float().contiguous(),
                   "eigvals": self.eigvals.float().contiguous()}, str(path.with_suffix(".safetensors")))
        info = {"shape": list(self.shape), "rank": self.rank, "residual": self.residual, "dtype_on_disk": "float32",
                "meta": self.meta}
        path.with_suffix(".json").write_text(json.dumps(info, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        """Read statistics written by `save` (a path with or without suffix, or a pipeline folder)."""
        from safetensors.torch import load_file

        path = Path(path)
        if path.is_dir():
            path = path / "diffskip_gaussian"
        path = path.with_suffix("")
        info = json.loads(path.with_suffix(".json").read_text())
        unknown = set(info) - {"shape", "rank", "residual", "dtype_on_disk", "meta"}
        if unknown:
            raise ValueError(f"{path.with_suffix('.json')}: unknown keys {sorted(unknown)}.")
        t = load_file(str(path.with_suffix(".safetensors")))
        return cls(t["mean"], t["eigvecs"], t["eigvals"], float(info["residual"]), tuple(info["shape"]),
                   info.get("meta", {}))

    def _gains(self, num: tuple[float, float], den: tuple[float, float]) -> tuple[torch.Tensor, float]:
        """Per-eigendirection and complement factors (a1^2 v + s1^2) / (a0^2 v + s0^2)."""
        (a1, s1), (a0, s0) = num, den
        lam = (a1 * a1 * self.eigvals + s1 * s1) / (a0 * a0 * self.eigvals + s0 * s0)
        rho = (a1 * a1 * self.residual + s1 * s1) / (a0 * a0 * self.residual + s0 * s0)
        return lam, rho

    def _apply(self, y: torch.Tensor, lam: torch.Tensor, rho: float) -> torch.Tensor:
        """Return (U diag(lam) U^T + rho P_perp) y for rows y (B, D)."""
        c = y @ self.eigvecs  # (B, r)
        return rho * y + (c * (lam - rho)) @ self.eigvecs.T


def _flat(x: torch.Tensor, stats: GaussianStats) -> torch.Tensor:
    if tuple(x.shape[1:]) != stats.shape:
        raise StatsShapeError(f"latents of shape {tuple(x.shape[1:])} do not match the Gaussian statistics' "
                              f"shape {stats.shape}; fit statistics at this resolution (`diffskip fit-gaussian`) "
                              f"or generate at the size they were fitted for.")
    return x.reshape(len(x), -1).to(torch.float64)


def gaussian_jump(stats: GaussianStats, x: torch.Tensor, src: tuple[float, float],
                  dst: tuple[float, float], mean: torch.Tensor | None = None) -> torch.Tensor:
    """Solve the probability-flow ODE exactly for Gaussian data from frame src=(a, s) to dst=(a, s); float64.

    `mean`: per-sample means (B, D) in place of the fitted one (the prompt-aware jump), same covariance."""
    mu = stats.mean if mean is None else mean
    y = _flat(x, stats) - src[0] * mu
    lam, rho = stats._gains(dst, src)
    out = dst[0] * mu + stats._apply(y, lam.sqrt(), rho**0.5)
    return out.reshape(x.shape)


def conditional_mean(stats: GaussianStats, x0: torch.Tensor, x: torch.Tensor,
                     frame: tuple[float, float]) -> torch.Tensor:
    """Per-sample Gaussian means (B, D) under which the posterior mean E[x0 | x_t = x] equals the model's `x0`.

    With the fitted covariance S, E[x0 | x] = m + G (x - a m), G = a S (a^2 S + s^2)^-1, so
    m = (I - a G)^-1 (x0 - G x): the mean the prompt asked for, read off one model prediction."""
    a, s = frame
    g = a * stats.eigvals / (a * a * stats.eigvals + s * s)
    g_rho = a * stats.residual / (a * a * stats.residual + s * s)
    rhs = _flat(x0, stats) - stats._apply(_flat(x, stats), g, g_rho)
    return stats._apply(rhs, 1 / (1 - a * g), 1 / (1 - a * g_rho))


def gaussian_x0(stats: GaussianStats, x: torch.Tensor, frame: tuple[float, float]) -> torch.Tensor:
    """Return the exact posterior mean E[x0 | x_t = x] for Gaussian data, x in frame (a, s); float64."""
    a, s = frame
    y = _flat(x, stats) - a * stats.mean
    lam = a * stats.eigvals / (a * a * stats.eigvals + s * s)
    rho = a * stats.residual / (a * a * stats.residual + s * s)
    return (stats.mean + stats._apply(y, lam, rho)).reshape(x.shape)


@dataclass
class GaussianSkip:
    """Skip the first `steps` denoising steps with the Gaussian closed-form jump.

    Args:
        stats: GaussianStats (or a path / pipeline folder holding `diffskip_gaussian.safetensors` + `.json`).
        steps: how many leading steps of the scheduler's schedule to replace; choose it with
            `diffskip.analytic_fit.calibrate` (explained variance of the model's prediction by the Gaussian one).
        conditional: prompt-aware: run step 0 and take each sample's Gaussian mean from the model's (guided)
            prediction there, so the jump keeps what the prompt asked for (costs that one model call).
    """

    stats: GaussianStats | str | Path
    steps: int
    conditional: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.stats, GaussianStats):
            self.stats = GaussianStats.load(self.stats)
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"GaussianSkip(steps={self.steps!r}): steps must be an int >= 0 (0 disables the jump).")
        if not isinstance(self.conditional, bool):
            raise ValueError(f"GaussianSkip(conditional={self.conditional!r}): allowed True (the mean from the "
                             f"model's first prediction) or False (the fitted mean).")

    @property
    def saved_calls(self) -> int:
        """Denoiser calls the jump saves: `steps`, less the conditional form's one call at step 0."""
        return max(0, self.steps - 1) if self.conditional else self.steps

    def start(self, x: torch.Tensor, scheduler) -> tuple[torch.Tensor, torch.Tensor]:
        """Jump the latents `x` your loop feeds its first step over `steps` steps; return (latents, timesteps).

        Call it right after `scheduler.set_timesteps(n)`; the scheduler is cut to the remaining steps (multistep
        history starts fresh). `x` is in the scheduler's frame: the noise times `init_noise_sigma` where your
        loop applies it (Euler). Conditional: the timesteps keep step 0, whose model call sets the mean."""
        from .start import start

        return start(self, x, scheduler)

    def __str__(self) -> str:
        cond = ",conditional" if self.conditional else ""
        return f"gaussian:steps={self.steps},rank={self.stats.rank}{cond}"
