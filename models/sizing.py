"""How much memory one trial needs at the least, so a study refuses a configuration that cannot
fit (``K = 10**9``) before any trial starts, instead of failing every trial while allocating.

The count is a *lower bound* (a refusal is never wrong), from two parts:

- **State**: the model is built on PyTorch's ``meta`` device (shapes, no storage), so the
  parameter count is the real model's, for every architecture. Training keeps four float32
  copies of every parameter: the value, its gradient and Adam's two moments → 16 bytes each.
  With the ``pseudo_mixture`` prior the K pseudo-inputs are K·P of those parameters.
- **One step's activations**: the encoder runs on the B images of a batch and on the K
  pseudo-inputs (their posterior components are the prior, eq. 15/17), so it holds at least
  the (B + K) × P inputs and two gated hidden layers of (B + K) × hidden values; the matched
  bound needs the (B, K, M, M) matrix of component KLs (eq. 12/18).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.config import TrialConfig

BYTES_FP32 = 4
STATE_COPIES = 4  # parameter, gradient, Adam exp_avg, Adam exp_avg_sq


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes one trial needs at the least (see the module docstring)."""

    parameters: int  # number of parameters (pseudo-inputs included)
    state_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes


def count_parameters(cfg: TrialConfig) -> int:
    """The model's parameter count, built on the meta device (no memory is allocated)."""
    import torch

    from models.vae import GMMpVAE

    with torch.device("meta"):
        model = GMMpVAE(cfg.model)
    return sum(p.numel() for p in model.parameters())


def memory_need(cfg: TrialConfig) -> MemoryNeed:
    m, t = cfg.model, cfg.train
    params = count_parameters(cfg)
    k = m.K if m.prior == "pseudo_mixture" else 0
    rows = t.batch_size + k
    activations = rows * (m.n_pixels + 2 * m.hidden_dim) + t.batch_size * k * m.M * m.M
    return MemoryNeed(parameters=params, state_bytes=STATE_COPIES * BYTES_FP32 * params,
                      activation_bytes=BYTES_FP32 * activations)


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_fits(cfg: TrialConfig, available_bytes: int, where: str = "this machine") -> None:
    """Raise a one-line ``ValueError`` when the trial cannot fit in ``available_bytes``."""
    need = memory_need(cfg)
    if need.total_bytes <= available_bytes:
        return
    m = cfg.model
    detail = (f"{need.parameters:,} parameters" +
              (f", {m.K:,} pseudo-inputs of {m.n_pixels} pixels" if m.prior == "pseudo_mixture"
               else ""))
    raise ValueError(
        f"a trial with K={m.K}, M={m.M}, latent_dim={m.latent_dim}, hidden_dim={m.hidden_dim}, "
        f"batch_size={cfg.train.batch_size} needs at least {_gib(need.total_bytes)} ({detail}) "
        f"but {where} has {_gib(available_bytes)}: reduce K, hidden_dim or batch_size")
