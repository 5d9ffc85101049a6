"""Priors p(z) behind one interface (docs/MATH.md#priors), chosen once by `build_prior`.

Every prior is a mixture of diagonal Gaussians described by `components()` — (K, M, D) means
and log-variances with (K, M) log-weights — and offers:

- ``log_prob(z)``: the exact log p(z) with constants, z (..., D) → (...);
- ``sample(n)``: n reparameterised draws, (n, D);
- ``kl_bound(mu, logvar, log_pi, matching)``: the KL term U(x) of the loss, (B,);
- ``kl_bounds(mu, logvar, log_pi)``: U(x) under several matchings at once, {name: (B,)}; the
  name ``"lse"`` gives U_lse(x) = −log (1/K) Σ_k exp(−B_βk) (greedy β) from the same matrix.

Each method takes an optional ``components`` (the result of one `components()` call) so a
training step encodes the pseudo-inputs once and shares them between all KL estimates.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.config import ModelConfig
from models.distributions import log_mixture_diag_flat, sample_mixture
from models.kl import MATCHINGS, gaussian_kl_standard, lse_of_bounds, pseudo_mixture_bounds

# VampPrior's initialisation of the pseudo-inputs: N(0.05, 0.01²), or training images + that noise.
PSEUDO_INIT_MEAN = 0.05
PSEUDO_INIT_STD = 0.01


class PriorComponents(NamedTuple):
    """p(z) = Σ_k Σ_m w_km N(z; μ_km, diag σ²_km), Σ w = 1."""

    mu: Tensor  # (K, M, D)
    logvar: Tensor  # (K, M, D)
    log_w: Tensor  # (K, M)


class Prior(nn.Module):
    """The interface every prior offers; subclasses define `components` and `kl_bound`."""

    def components(self) -> PriorComponents:  # pragma: no cover - abstract
        raise NotImplementedError

    def kl_bound(
        self,
        mu: Tensor,
        logvar: Tensor,
        log_pi: Tensor,
        matching: str = "greedy",
        components: PriorComponents | None = None,
    ) -> Tensor:  # pragma: no cover - abstract
        """U(x) ≥ KL(q(z|x) ‖ p(z)): mu, logvar (B, M, D), log_pi (M,) → (B,)."""
        raise NotImplementedError

    def kl_bounds(
        self,
        mu: Tensor,
        logvar: Tensor,
        log_pi: Tensor,
        components: PriorComponents | None = None,
        matchings: tuple[str, ...] = tuple(MATCHINGS),
    ) -> dict[str, Tensor]:
        """`kl_bound` under each of ``matchings``: {"greedy": (B,), "optimal": (B,)}."""
        return {m: self.kl_bound(mu, logvar, log_pi, m, components) for m in matchings}

    def log_prob(self, z: Tensor, components: PriorComponents | None = None) -> Tensor:
        """log p(z) = logsumexp_{k,m} [log w_km + log N(z; μ_km, σ²_km)]: z (..., D) → (...)."""
        c = self.components() if components is None else components
        dim = c.mu.shape[-1]
        return log_mixture_diag_flat(
            z, c.mu.reshape(-1, dim), c.logvar.reshape(-1, dim), c.log_w.reshape(-1)
        )

    def sample(self, n: int, components: PriorComponents | None = None) -> Tensor:
        """n reparameterised draws z ∼ p(z): a component (k, m) from w, then its Gaussian;
        → (n, D)."""
        c = self.components() if components is None else components
        dim = c.mu.shape[-1]
        mu, logvar = c.mu.reshape(1, -1, dim), c.logvar.reshape(1, -1, dim)  # (1, KM, D)
        return sample_mixture(mu, logvar, torch.exp(c.log_w.reshape(-1)), n)[:, 0]  # (n, D)


class StandardPrior(Prior):
    """p(z) = N(0, I), the plain VAE's prior.

    Its KL term is U(x) = Σ_m π_m KL(q_m ‖ N(0, I)) (docs/MATH.md#paper-bound). Seen as an
    M-mixture of identical N(0, I) components with weights π, every matching β gives
    B_β = Σ_m π_m log(π_m/π_β(m)) + Σ_m π_m KL(q_m ‖ N(0, I)); the weight term is ≥ 0 and 0
    when β pairs equal weights (rearrangement inequality), which is what both the greedy
    (eq. 13) and the optimal matching choose: greedy = optimal = U here, and U_lse = U (one
    prior member, K = 1), so ``matching`` is accepted and ignored.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("zero", torch.zeros(1, 1, latent_dim), persistent=False)

    def components(self) -> PriorComponents:
        return PriorComponents(self.zero, self.zero, self.zero[..., 0])

    def kl_bound(
        self,
        mu: Tensor,
        logvar: Tensor,
        log_pi: Tensor,
        matching: str = "greedy",
        components: PriorComponents | None = None,
    ) -> Tensor:
        """U(x) = Σ_m π_m KL(q_m ‖ N(0, I)): mu, logvar (B, M, D), log_pi (M,) → (B,)."""
        return (torch.exp(log_pi) * gaussian_kl_standard(mu, logvar)).sum(-1)

    def kl_bounds(
        self,
        mu: Tensor,
        logvar: Tensor,
        log_pi: Tensor,
        components: PriorComponents | None = None,
        matchings: tuple[str, ...] = tuple(MATCHINGS),
    ) -> dict[str, Tensor]:
        """U(x) once, for each of ``matchings`` (they agree here): {name: (B,)}."""
        return dict.fromkeys(matchings, self.kl_bound(mu, logvar, log_pi))


def init_pseudo_inputs(k: int, n_pixels: int, init_data: Tensor | None = None) -> Tensor:
    """VampPrior's initial pseudo-inputs (K, P): N(0.05, 0.01²) per pixel, or K random rows of
    ``init_data`` (N, P) (without replacement when N ≥ K) plus N(0, 0.01²) noise."""
    if init_data is None:
        return PSEUDO_INIT_MEAN + PSEUDO_INIT_STD * torch.randn(k, n_pixels)
    n_data = init_data.shape[0]
    device = init_data.device
    if n_data >= k:
        index = torch.randperm(n_data, device=device)[:k]
    else:
        index = torch.randint(n_data, (k,), device=device)
    rows = init_data[index].reshape(k, n_pixels).float()  # (K, P)
    return rows + PSEUDO_INIT_STD * torch.randn_like(rows)


class PseudoMixturePrior(Prior):
    """p(z) = (1/K) Σ_k q(z|a_k) = (1/K) Σ_k Σ_m π_m N(z; μ_m(a_k), σ²_m(a_k)) (eq. 15/17/20).

    The pseudo-inputs a_k = hardtanh(u_k) ∈ [0, 1]^P come from a (K, P) parameter u (no K×K
    identity product, unlike VampPrior's code) and go through the shared ``encoder``. With
    M = 1 this is exactly VampPrior.
    """

    def __init__(
        self,
        encoder: nn.Module,
        K: int,
        n_pixels: int,
        log_pi: Tensor,
        init_data: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder  # shared with the VAE: the same parameters
        self.K = K
        self.pseudo_inputs = nn.Parameter(init_pseudo_inputs(K, n_pixels, init_data))  # (K, P)
        self.register_buffer("log_pi", log_pi.detach().clone().float())  # (M,)

    def pseudo_images(self) -> Tensor:
        """The pseudo-inputs a_k = hardtanh(u_k, 0, 1): (K, P)."""
        return F.hardtanh(self.pseudo_inputs, 0.0, 1.0)

    def components(self) -> PriorComponents:
        mu, logvar = self.encoder(self.pseudo_images())  # (K, M, D) each
        log_w = (self.log_pi - math.log(self.K)).expand(self.K, -1)  # (K, M)
        return PriorComponents(mu, logvar, log_w)

    def kl_bound(
        self,
        mu: Tensor,
        logvar: Tensor,
        log_pi: Tensor,
        matching: str = "greedy",
        components: PriorComponents | None = None,
    ) -> Tensor:
        """U(x) = (1/K) Σ_k B_βk(q(·|x) ‖ q(·|a_k)) (eq. 18/22) with ``matching`` "greedy"
        (eq. 13) or "optimal", or U_lse(x) for "lse": mu, logvar (B, M, D), log_pi (M,) (the
        shared π) → (B,)."""
        return self.kl_bounds(mu, logvar, log_pi, components, (matching,))[matching]

    def kl_bounds(
        self,
        mu: Tensor,
        logvar: Tensor,
        log_pi: Tensor,
        components: PriorComponents | None = None,
        matchings: tuple[str, ...] = tuple(MATCHINGS),
    ) -> dict[str, Tensor]:
        """U(x) under each of ``matchings`` from one all-pairs KL matrix: {name: (B,)}; "lse"
        is U_lse(x) (models.kl.pseudo_mixture_lse_bound) from the greedy B_βk."""
        c = self.components() if components is None else components
        needed = tuple(dict.fromkeys("greedy" if n == "lse" else n for n in matchings))
        bounds = pseudo_mixture_bounds(mu, logvar, c.mu, c.logvar, log_pi, needed)
        return {n: lse_of_bounds(bounds["greedy"]) if n == "lse" else bounds[n].mean(-1)
                for n in matchings}


def build_prior(cfg: ModelConfig, encoder: nn.Module, init_data: Tensor | None = None) -> Prior:
    """The prior ``cfg.prior``. ``init_data`` (N, P) initialises the pseudo-inputs only when
    ``cfg.pseudo_init == "data"``; without it (e.g. before loading a checkpoint) they start
    from N(0.05, 0.01²)."""
    if cfg.prior == "standard":
        return StandardPrior(cfg.latent_dim)
    log_pi = torch.log(torch.tensor(cfg.pi, dtype=torch.float32))
    data = init_data if cfg.pseudo_init == "data" else None
    return PseudoMixturePrior(encoder, cfg.K, cfg.n_pixels, log_pi, data)
