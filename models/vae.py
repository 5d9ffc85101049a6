"""The GMMpVAE model, composed of an encoder, a decoder with its likelihood, and a prior.

Per image x (docs/MATH.md#model, eq. 14/19, 18/22, 23):

- q(z|x) = Σ_m π_m N(z; μ_m(x), diag σ²_m(x)) with fixed weights π (a buffer);
- RE = −E_q[log p(x|z)] = −Σ_m π_m E_{N_m}[log p(x|z)], one reparameterised sample per
  component (stratified); the PixelCNN decoder is teacher-forced with x;
- KL: the configured estimator (``cfg.kl_estimator``) — the matched bound U(x) with greedy
  (eq. 13) or optimal matching, its log-sum-exp refinement U_lse(x) (``lse``, ours), or the
  Monte Carlo KL log q(z|x) − log p(z) at the same stratified samples, weighted by π — used in
  the loss mean(RE + β·KL); all four are available detached for reporting (computed when
  first read).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial

import torch
from torch import Tensor, nn

from models.config import KL_ESTIMATORS, ModelConfig
from models.distributions import log_mixture_diag, sample_stratified
from models.kl import mc_kl
from models.likelihoods import build_likelihood
from models.networks import build_decoder, build_encoder
from models.priors import PriorComponents, build_prior


@dataclass(eq=False)
class LossTerms:
    """One batch's terms: ``loss`` a scalar, every other field (B,) in nats per image.

    ``kl_greedy``, ``kl_optimal``, ``kl_lse`` and ``kl_mc`` are computed without gradient on
    first access (from this batch's encodings and samples), so a training step that never
    reads them does not pay for them; the configured estimator's entry is ``kl.detach()``.
    """

    loss: Tensor  # mean(re + β·kl)
    re: Tensor  # −E_q[log p(x|z)]
    kl: Tensor  # the configured estimator, with gradient
    reports: Callable[..., dict[str, Tensor]] = field(repr=False)  # the KLs, detached
    estimator: str = "greedy"  # the configured one (``kl``)

    @cached_property
    def _reported(self) -> dict[str, Tensor]:
        return self.reports()

    def estimate(self, name: str) -> Tensor:
        """One KL estimate, detached, computing only that one (the configured estimator's is
        ``kl.detach()``): e.g. ``estimate("mc")`` for the validation MC ELBO."""
        if name == self.estimator:
            return self.kl.detach()
        if "_reported" in self.__dict__:
            return self._reported[name]
        return self.reports((name,))[name]

    @property
    def kl_greedy(self) -> Tensor:
        """U(x) with greedy matching (eq. 13), detached."""
        return self._reported["greedy"]

    @property
    def kl_optimal(self) -> Tensor:
        """U(x) with optimal matching, detached."""
        return self._reported["optimal"]

    @property
    def kl_lse(self) -> Tensor:
        """U_lse(x) = −log (1/K) Σ_k exp(−B_βk), greedy β (models.kl), detached."""
        return self._reported["lse"]

    @property
    def kl_mc(self) -> Tensor:
        """Monte Carlo KL (stratified samples, exact densities), detached."""
        return self._reported["mc"]


class GMMpVAE(nn.Module):
    """GMMpVAE(cfg, init_data): encoder, decoder + likelihood, and the prior ``cfg.prior``.

    ``init_data`` (N, P) initialises the pseudo-inputs when ``cfg.pseudo_init == "data"``.
    """

    def __init__(self, cfg: ModelConfig, init_data: Tensor | None = None) -> None:
        super().__init__()
        self.config = cfg
        self.likelihood = build_likelihood(cfg.likelihood)
        self.encoder = build_encoder(cfg)
        self.decoder = build_decoder(cfg, self.likelihood.n_params)
        self.prior = build_prior(cfg, self.encoder, init_data)
        self.register_buffer("pi", torch.tensor(cfg.pi, dtype=torch.float32))  # (M,)

    @property
    def log_pi(self) -> Tensor:
        return torch.log(self.pi)  # (M,)

    # ------------------------------------------------------------------------------------------
    # Densities

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, P) → mu, logvar (B, M, D) of q(z|x)'s components."""
        return self.encoder(x)

    def log_px_given_z(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) with constants: x (B, P), z (..., B, D) → (..., B).

        Extra leading sample dims of z (e.g. (S, B, D) for importance sampling) broadcast
        against x; the PixelCNN decoder reads x (teacher forcing), the others ignore it.
        """
        lead, dim, n_pixels = z.shape[:-1], z.shape[-1], x.shape[-1]  # lead = (..., B)
        x_in = x.expand(*lead, n_pixels).reshape(-1, n_pixels) if self.autoregressive else None
        params = self.decoder(z.reshape(-1, dim), x_in)  # (N, P, n_params)
        params = params.view(*lead, *params.shape[1:])  # (..., B, P, n_params)
        return self.likelihood.log_prob(x, params)  # (..., B)

    def log_q(self, z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """log q(z|x) = log Σ_m π_m N(z; μ_m, σ²_m) (eq. 14/19): z (..., B, D),
        mu, logvar (B, M, D) → (..., B)."""
        return log_mixture_diag(z, mu, logvar, self.log_pi)

    @property
    def autoregressive(self) -> bool:
        return bool(getattr(self.decoder, "autoregressive", False))

    # ------------------------------------------------------------------------------------------
    # Loss

    def kl_terms(
        self,
        mu: Tensor,
        logvar: Tensor,
        z: Tensor,
        components: PriorComponents,
        names: tuple[str, ...] = KL_ESTIMATORS,
    ) -> dict[str, Tensor]:
        """KL estimates of a batch, {name: (B,)} for ``names`` among "greedy", "optimal"
        (U(x), eq. 18/22), "lse" (U_lse(x); all three share one all-pairs KL matrix) and "mc"
        (Σ_m π_m [log q(z_m|x) − log p(z_m)] at the stratified samples, exact mixture
        densities).
        mu, logvar (B, M, D); z (M, B, D)."""
        matchings = tuple(n for n in names if n != "mc")
        kls = self.prior.kl_bounds(mu, logvar, self.log_pi, components, matchings)
        if "mc" in names:
            prior_log_prob = partial(self.prior.log_prob, components=components)
            per_sample = mc_kl(z, mu, logvar, self.log_pi, prior_log_prob)  # (M, B)
            kls["mc"] = (self.pi[:, None] * per_sample).sum(0)  # (B,)
        return kls

    def forward(self, x: Tensor, beta: float = 1.0) -> LossTerms:
        """All terms for a batch x (B, P): loss = mean(RE + β·KL) (eq. 23 with warm-up β)."""
        mu, logvar = self.encode(x)  # (B, M, D)
        z = sample_stratified(mu, logvar).transpose(0, 1)  # (M, B, D)
        re = -(self.pi[:, None] * self.log_px_given_z(x, z)).sum(0)  # (B,)
        comps = self.prior.components()  # the pseudo-inputs are encoded once per step
        estimator = self.config.kl_estimator
        kl = self.kl_terms(mu, logvar, z, comps, (estimator,))[estimator]

        def reports(names: tuple[str, ...] = KL_ESTIMATORS) -> dict[str, Tensor]:
            others = tuple(n for n in names if n != estimator)
            with torch.no_grad():
                kls = self.kl_terms(mu, logvar, z, comps, others)
            return {**kls, estimator: kl.detach()}

        return LossTerms(loss=(re + beta * kl).mean(), re=re, kl=kl, reports=reports,
                         estimator=estimator)

    # ------------------------------------------------------------------------------------------
    # Images

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Reconstructions (B, P) of x (B, P) from z = μ_m*(x), the posterior mean of the most
        probable component m* = argmax π (ties: lowest index). The image is the mean of
        p(x|z) — except for the PixelCNN decoder, whose mean is intractable: it draws one
        image pixel by pixel from p(x|z)."""
        mu, _ = self.encode(x)  # (B, M, D)
        z = mu[:, int(torch.argmax(self.pi))]  # (B, D)
        if self.autoregressive:
            return self.decoder.sample(z, self.likelihood)
        return self.likelihood.mean(self.decoder(z, None))

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False) -> Tensor:
        """n images (n, P) from the model: z ∼ p(z), then x ∼ p(x|z) (pixel by pixel for
        PixelCNN). ``mean=True`` gives the mean of p(x|z) instead (not for PixelCNN)."""
        z = self.prior.sample(n)  # (n, D)
        if mean and not self.autoregressive:
            return self.likelihood.mean(self.decoder(z, None))
        return self.decoder.sample(z, self.likelihood)
