"""models/priors.py: the standard and pseudo-mixture priors behind one interface. The M = 1
pseudo-mixture equals a VampPrior log-density written here independently; M > 1 equals a SciPy
mixture; the pseudo-inputs are a (K, P) parameter initialised as VampPrior does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from torch.distributions import Independent, Normal, kl_divergence

from models.config import ModelConfig
from models.distributions import sample_mixture
from models.kl import mc_kl
from models.networks import build_encoder
from models.priors import (
    PSEUDO_INIT_MEAN,
    PSEUDO_INIT_STD,
    Prior,
    PseudoMixturePrior,
    StandardPrior,
    build_prior,
)


def _cfg(**changes) -> ModelConfig:
    base = dict(arch="mlp", M=1, K=7, latent_dim=3, hidden_dim=8, image_shape=(8, 8))
    return ModelConfig(**{**base, **changes})


def _pseudo_prior(cfg: ModelConfig, seed: int = 0) -> PseudoMixturePrior:
    torch.manual_seed(seed)
    prior = build_prior(cfg, build_encoder(cfg))
    assert isinstance(prior, PseudoMixturePrior)
    with torch.no_grad():  # spread the pseudo-inputs so the K members differ
        prior.pseudo_inputs.uniform_(-0.2, 1.2)
    return prior.double()


# ----------------------------------------------------------------------------------------------
# Standard prior


def test_standard_prior_log_prob_sample_and_kl_bound():
    torch.manual_seed(0)
    prior = StandardPrior(4)
    z = torch.randn(2, 5, 4)
    expected = Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(prior.log_prob(z), expected)
    sample = prior.sample(20_000)
    assert sample.shape == (20_000, 4)
    assert sample.mean().abs() < 0.02 and (sample.var(0) - 1).abs().max() < 0.05

    mu, logvar = torch.randn(5, 3, 4), torch.randn(5, 3, 4)
    pi = torch.tensor([0.2, 0.5, 0.3])
    per_comp = kl_divergence(
        Independent(Normal(mu, torch.exp(0.5 * logvar)), 1),
        Independent(Normal(torch.zeros(4), torch.ones(4)), 1),
    )  # (5, 3)
    expected = (pi * per_comp).sum(-1)
    for matching in ("greedy", "optimal"):  # greedy = optimal for N(0, I)
        torch.testing.assert_close(prior.kl_bound(mu, logvar, torch.log(pi), matching), expected)


# ----------------------------------------------------------------------------------------------
# Pseudo-mixture prior


def _vampprior_log_p(z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor) -> torch.Tensor:
    """VampPrior's log p(z) = log (1/K) Σ_k N(z; μ_k, σ²_k), as in Tomczak & Welling's code:
    z (N, D), means, logvars (K, D) → (N,)."""
    z_expand = z.unsqueeze(1)  # (N, 1, D)
    a = -0.5 * (
        logvars.unsqueeze(0)
        + torch.pow(z_expand - means.unsqueeze(0), 2) / torch.exp(logvars.unsqueeze(0))
    )
    a = a.sum(2) - 0.5 * z.shape[1] * math.log(2 * math.pi) - math.log(means.shape[0])  # (N, K)
    a_max, _ = torch.max(a, 1)
    return a_max + torch.log(torch.sum(torch.exp(a - a_max.unsqueeze(1)), 1))


def test_m1_pseudo_mixture_equals_vampprior_log_density():
    cfg = _cfg(M=1, K=7)
    prior = _pseudo_prior(cfg)
    z = torch.randn(11, cfg.latent_dim, dtype=torch.float64)
    a = torch.clamp(prior.pseudo_inputs, 0.0, 1.0)  # VampPrior's hardtanh(0, 1)
    means, logvars = prior.encoder(a)  # (K, 1, D)
    expected = _vampprior_log_p(z, means[:, 0], logvars[:, 0])
    torch.testing.assert_close(prior.log_prob(z), expected)


def test_pseudo_mixture_log_prob_equals_scipy_mixture():
    cfg = _cfg(M=3, K=5, pi=(0.2, 0.5, 0.3))
    prior = _pseudo_prior(cfg, seed=1)
    z = torch.randn(2, 3, cfg.latent_dim, dtype=torch.float64)
    got = prior.log_prob(z)
    assert got.shape == (2, 3)
    with torch.no_grad():
        mu, logvar = (t.numpy() for t in prior.encoder(prior.pseudo_images()))  # (K, M, D)
    pi = np.array(cfg.pi)
    for i in range(2):
        for j in range(3):
            terms = [
                np.log(pi[m] / cfg.K)
                + multivariate_normal(mu[k, m], np.diag(np.exp(logvar[k, m]))).logpdf(z[i, j])
                for k in range(cfg.K)
                for m in range(cfg.M)
            ]
            # rel 1e-7: log π is a float32 buffer before the prior is cast to float64.
            assert got[i, j].item() == pytest.approx(float(logsumexp(terms)), rel=1e-7)


def test_pseudo_mixture_kl_bound_m1_is_mean_kl_and_m3_is_at_least_mc_kl():
    cfg = _cfg(M=1, K=6)
    prior = _pseudo_prior(cfg, seed=2)
    mu = torch.randn(4, 1, cfg.latent_dim, dtype=torch.float64)
    logvar = 0.3 * torch.randn(4, 1, cfg.latent_dim, dtype=torch.float64)
    c = prior.components()
    expected = kl_divergence(
        Independent(Normal(mu[:, None, 0], torch.exp(0.5 * logvar[:, None, 0])), 1),
        Independent(Normal(c.mu[None, :, 0], torch.exp(0.5 * c.logvar[None, :, 0])), 1),
    ).mean(-1)
    log_pi = torch.zeros(1, dtype=torch.float64)
    for matching in ("greedy", "optimal"):
        torch.testing.assert_close(prior.kl_bound(mu, logvar, log_pi, matching), expected)

    cfg = _cfg(M=3, K=6, pi=(0.5, 0.25, 0.25))
    prior = _pseudo_prior(cfg, seed=3)
    mu = torch.randn(4, 3, cfg.latent_dim, dtype=torch.float64)
    logvar = 0.3 * torch.randn(4, 3, cfg.latent_dim, dtype=torch.float64)
    pi = torch.tensor(cfg.pi, dtype=torch.float64)
    with torch.no_grad():
        greedy = prior.kl_bound(mu, logvar, torch.log(pi), "greedy")
        optimal = prior.kl_bound(mu, logvar, torch.log(pi), "optimal")
        z = sample_mixture(mu, logvar, pi, 20_000)  # (S, B, D)
        values = mc_kl(z, mu, logvar, torch.log(pi), prior.log_prob)  # (S, B)
    mean, se = values.mean(0), values.std(0) / math.sqrt(values.shape[0])
    assert (optimal <= greedy + 1e-12).all()
    assert (optimal >= mean - 4 * se).all()


def test_pseudo_inputs_are_a_k_by_p_parameter_with_vampprior_init():
    cfg = _cfg(K=400)
    torch.manual_seed(0)
    prior = build_prior(cfg, build_encoder(cfg))
    u = prior.pseudo_inputs
    assert isinstance(u, torch.nn.Parameter) and u.shape == (400, cfg.n_pixels)
    assert abs(u.mean().item() - PSEUDO_INIT_MEAN) < 1e-3
    assert abs(u.std().item() - PSEUDO_INIT_STD) < 1e-3
    assert not any(p.shape == (cfg.K, cfg.K) for p in prior.parameters())  # no K×K identity
    with torch.no_grad():
        u.uniform_(-1.0, 2.0)
    images = prior.pseudo_images()
    assert images.min() == 0.0 and images.max() == 1.0  # hardtanh to [0, 1]


def test_pseudo_inputs_data_init_uses_training_images_plus_noise():
    cfg = _cfg(K=5, pseudo_init="data")
    data = torch.rand(50, cfg.n_pixels)
    torch.manual_seed(0)
    prior = build_prior(cfg, build_encoder(cfg), init_data=data)
    u = prior.pseudo_inputs.detach()  # (K, P)
    dist = torch.cdist(u, data)  # (K, 50)
    nearest = dist.argmin(1)
    assert len(set(nearest.tolist())) == cfg.K  # distinct images (no replacement)
    noise = u - data[nearest]
    assert noise.abs().max() < 6 * PSEUDO_INIT_STD and noise.std() > 0.5 * PSEUDO_INIT_STD
    # More pseudo-inputs than images: drawn with replacement.
    prior = build_prior(_cfg(K=9, pseudo_init="data"), build_encoder(cfg), init_data=data[:3])
    assert prior.pseudo_inputs.shape == (9, cfg.n_pixels)
    # "data" without data (e.g. before loading a checkpoint), or "normal" with data: N(0.05, ·).
    for cfg_i, data_i in ((_cfg(pseudo_init="data"), None), (_cfg(), data)):
        u = build_prior(cfg_i, build_encoder(cfg_i), init_data=data_i).pseudo_inputs
        assert abs(u.mean().item() - PSEUDO_INIT_MEAN) < 0.01


def test_gradients_reach_pseudo_inputs_and_encoder_through_kl_and_log_prob():
    cfg = _cfg(M=2, K=4)
    torch.manual_seed(0)
    encoder = build_encoder(cfg)
    prior = build_prior(cfg, encoder)
    mu, logvar = torch.randn(3, 2, cfg.latent_dim), torch.zeros(3, 2, cfg.latent_dim)
    log_pi = torch.log(torch.tensor([0.5, 0.5]))
    for loss in (
        prior.kl_bound(mu, logvar, log_pi, "greedy").sum(),
        prior.kl_bound(mu, logvar, log_pi, "optimal").sum(),
        prior.log_prob(torch.randn(5, cfg.latent_dim)).sum(),
    ):
        prior.zero_grad()
        loss.backward()
        for p in (prior.pseudo_inputs, *encoder.parameters()):
            assert p.grad is not None and torch.isfinite(p.grad).all()
        assert prior.pseudo_inputs.grad.abs().sum() > 0
        assert sum(p.grad.abs().sum() for p in encoder.parameters()) > 0


def test_sample_shapes_and_shared_components():
    cfg = _cfg(M=3, K=4)
    torch.manual_seed(0)
    prior = build_prior(cfg, build_encoder(cfg))
    assert isinstance(prior, Prior)
    c = prior.components()
    assert c.mu.shape == c.logvar.shape == (4, 3, cfg.latent_dim)
    assert c.log_w.shape == (4, 3)
    torch.testing.assert_close(torch.logsumexp(c.log_w.flatten(), 0), torch.tensor(0.0))
    assert prior.sample(6).shape == (6, cfg.latent_dim)
    z = torch.randn(2, cfg.latent_dim)
    torch.testing.assert_close(prior.log_prob(z, components=c), prior.log_prob(z))
    assert isinstance(build_prior(_cfg(prior="standard"), build_encoder(cfg)), StandardPrior)


@pytest.mark.parametrize("prior_name", ["standard", "pseudo_mixture"])
def test_kl_bounds_shares_one_matrix_and_equals_kl_bound(prior_name: str):
    cfg = _cfg(prior=prior_name, M=3, K=4, pi=(0.2, 0.5, 0.3))
    torch.manual_seed(0)
    prior = build_prior(cfg, build_encoder(cfg))
    mu, logvar = torch.randn(5, 3, cfg.latent_dim), 0.5 * torch.randn(5, 3, cfg.latent_dim)
    log_pi = torch.log(torch.tensor(cfg.pi))
    c = prior.components()
    bounds = prior.kl_bounds(mu, logvar, log_pi, components=c)
    assert set(bounds) == {"greedy", "optimal"}
    for matching, value in bounds.items():
        assert value.shape == (5,)
        torch.testing.assert_close(value, prior.kl_bound(mu, logvar, log_pi, matching))
    assert (bounds["optimal"] <= bounds["greedy"] + 1e-5).all()
