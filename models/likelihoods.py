"""Pixel likelihoods p(x|z) given the decoder's raw per-pixel parameters (docs/MATH.md#likelihoods).

- `Bernoulli`: one logit per pixel, for binary images (dynamic binarization).
- `DiscretizedLogistic`: a location and a log-scale per pixel, for grey levels
  x ∈ {0, 1/255, …, 1}; 256 bins of width 1/255 centred on the grey levels, the two edge bins
  extended to −∞ and +∞, so the bin probabilities sum to exactly 1.

Each likelihood has ``n_params`` (values per pixel the decoder outputs), ``log_prob(x, params)``
summed over pixels (with constants, nats per image), ``sample(params)`` and ``mean(params)``.
params may be (..., P, n_params) or, for n_params = 1, (..., P).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# The log-scale is clamped here: below, bins narrower than ~1e-3 of a grey level add nothing;
# above, the 1/255 bins become so thin relative to the scale that float32 loses them.
LOG_SCALE_MIN = -7.0
LOG_SCALE_MAX = 7.0


def _as_params(params: Tensor, x: Tensor, n_params: int) -> Tensor:
    """(..., P) or (..., P, n_params) → (..., P, n_params)."""
    if n_params == 1 and params.dim() == x.dim():
        return params.unsqueeze(-1)
    return params


class Bernoulli:
    """p(x|z) = Π_i Bernoulli(x_i; σ(ℓ_i)) on logits ℓ; log p = −BCE-with-logits, summed."""

    n_params = 1

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """x (..., P) in [0, 1], logits (..., P[, 1]) → log p(x|z) (...)."""
        logits = _as_params(params, x, 1)[..., 0]  # (..., P)
        logits, x = torch.broadcast_tensors(logits, x.to(logits.dtype))
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    def sample(self, params: Tensor) -> Tensor:
        """Binary images (..., P) drawn from the logits (..., P, 1)."""
        return torch.bernoulli(torch.sigmoid(params[..., 0]))

    def mean(self, params: Tensor) -> Tensor:
        """Per-pixel probabilities σ(ℓ): (..., P, 1) → (..., P)."""
        return torch.sigmoid(params[..., 0])


class DiscretizedLogistic:
    """Logistic(μ, s) discretised into ``n_bins`` bins centred on k/(n_bins − 1).

    P(x = k/(n−1)) = F(x + h) − F(x − h), h = ½/(n−1), F the logistic CDF, with F(−∞) = 0 at
    k = 0 and F(+∞) = 1 at k = n − 1. params (..., P, 2) = (location μ, log-scale log s); μ is
    used as given (no squashing: edge bins hold the mass outside [0, 1]); log s is clamped to
    [LOG_SCALE_MIN, LOG_SCALE_MAX].
    """

    n_params = 2

    def __init__(self, n_bins: int = 256) -> None:
        if n_bins < 2:
            raise ValueError(f"n_bins={n_bins!r} is invalid: expected an integer >= 2")
        self.n_bins = n_bins

    def _loc_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        loc = params[..., 0]  # (..., P)
        log_scale = params[..., 1].clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)  # (..., P)
        return loc, log_scale

    def _log_bin(self, k: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
        """log P(bin k) per pixel; k, loc, log_scale broadcast → (...).

        log(F(a) − F(b)) with a = (x + h − μ)/s, b = (x − h − μ)/s is computed as
        log σ(a) + log σ(−b) + log(1 − e^{−(a−b)}) — never a difference of two close CDFs —
        and the edge bins as log σ(a) (k = 0) and log σ(−b) (k = n − 1). Every branch is
        finite, so gradients through `torch.where` stay finite too.
        """
        top = self.n_bins - 1
        half = 0.5 / top
        inv_scale = torch.exp(-log_scale)
        centre = (k / top - loc) * inv_scale
        a = centre + half * inv_scale  # upper edge, standardised
        b = centre - half * inv_scale  # lower edge, standardised
        log_width = torch.log(-torch.expm1(-2.0 * half * inv_scale))  # log(1 − e^{−(a−b)})
        log_mid = F.logsigmoid(a) + F.logsigmoid(-b) + log_width
        log_bin = torch.where(k == 0, F.logsigmoid(a), log_mid)
        return torch.where(k == top, F.logsigmoid(-b), log_bin)

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """x (..., P) grey levels k/(n−1), params (..., P, 2) → log p(x|z) (...)."""
        loc, log_scale = self._loc_scale(params)
        top = self.n_bins - 1
        k = torch.round(x.to(loc.dtype) * top).clamp(0, top)  # (..., P) bin index
        return self._log_bin(k, loc, log_scale).sum(-1)

    def sample(self, params: Tensor) -> Tensor:
        """Grey-level images (..., P) in {0, …, 1}: a logistic draw, rounded to its bin."""
        loc, log_scale = self._loc_scale(params)
        u = torch.rand_like(loc).clamp(1e-6, 1.0 - 1e-6)
        y = loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
        top = self.n_bins - 1
        return torch.round(y.clamp(0.0, 1.0) * top) / top

    def bin_log_probs(self, params: Tensor) -> Tensor:
        """log P(bin k) of every bin: params (..., P, 2) → (..., P, n_bins)."""
        loc, log_scale = self._loc_scale(params.unsqueeze(-2))  # (..., P, 1)
        k = torch.arange(self.n_bins, dtype=params.dtype, device=params.device)  # (n,)
        return self._log_bin(k, loc, log_scale)  # (..., P, n)

    def mean(self, params: Tensor) -> Tensor:
        """The exact mean Σ_k (k/(n−1)) P(k) of each pixel: (..., P, 2) → (..., P)."""
        grid = torch.linspace(0.0, 1.0, self.n_bins, dtype=params.dtype, device=params.device)
        return (torch.exp(self.bin_log_probs(params)) * grid).sum(-1)


LIKELIHOODS: dict[str, type[Bernoulli] | type[DiscretizedLogistic]] = {
    "bernoulli": Bernoulli,
    "logistic": DiscretizedLogistic,
}


def build_likelihood(name: str) -> Bernoulli | DiscretizedLogistic:
    """The likelihood called ``name`` in ModelConfig.likelihood ("bernoulli" or "logistic")."""
    if name not in LIKELIHOODS:
        accepted = ", ".join(LIKELIHOODS)
        raise ValueError(f"likelihood={name!r} is invalid: expected one of {accepted}")
    return LIKELIHOODS[name]()
