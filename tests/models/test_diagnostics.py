"""models/diagnostics.py: each collapse diagnostic against a brute-force NumPy computation on a
small model, and the two regimes (identical members → perplexity 1, spread 0, U = U_lse)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import logsumexp

from models.config import ModelConfig
from models.diagnostics import (
    COLLAPSE_PERPLEXITY,
    COLLAPSE_SPREAD,
    DIAGNOSTICS,
    collapse_diagnostics,
    is_collapsed,
)
from models.distributions import log_mixture_diag
from models.priors import PriorComponents
from models.vae import GMMpVAE


def _model(**kw) -> GMMpVAE:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="mlp", latent_dim=3, hidden_dim=16, image_shape=(4, 4), **kw)
    return GMMpVAE(cfg).double()


def _log_gauss(z, mu, lv):
    return -0.5 * ((z - mu) ** 2 / np.exp(lv) + lv + math.log(2 * math.pi)).sum(-1)


def test_diagnostics_equal_a_brute_force_loop():
    model = _model(M=2, K=4, pi=(0.3, 0.7))
    with torch.no_grad():  # spread the pseudo-inputs so the members differ
        model.prior.pseudo_inputs.copy_(torch.rand(4, 16, dtype=torch.float64))
    x = torch.rand(7, 16, dtype=torch.float64)
    torch.manual_seed(5)
    got = collapse_diagnostics(model, x)
    # the same stratified samples: replay the RNG
    torch.manual_seed(5)
    with torch.no_grad():
        mu, lv = (t.numpy() for t in model.encode(x))
        eps = torch.randn(7, 2, 3, dtype=torch.float64).numpy()
        mp, lp = (t.numpy() for t in model.encoder(model.prior.pseudo_images()))
    z = mu + np.exp(0.5 * lv) * eps  # (N, M, D)
    pi = np.array([0.3, 0.7])
    r_bar, perp, kl = np.zeros(4), 0.0, np.zeros(7)
    for n in range(7):
        for m in range(2):
            log_qk = np.array([logsumexp([math.log(pi[j]) + _log_gauss(z[n, m], mp[k, j], lp[k, j])
                                          for j in range(2)]) for k in range(4)])
            r = np.exp(log_qk - logsumexp(log_qk))
            r_bar += pi[m] * r / 7
            perp += pi[m] * math.exp(-(r * np.log(r)).sum()) / 7
            log_q = logsumexp([math.log(pi[j]) + _log_gauss(z[n, m], mu[n, j], lv[n, j])
                               for j in range(2)])
            kl[n] += pi[m] * (log_q - (logsumexp(log_qk) - math.log(4)))
    means_p, means_x = (pi[:, None] * mp).sum(1), (pi[:, None] * mu).sum(1)

    def spread(a):
        return math.sqrt(((a - a.mean(0)) ** 2).sum(-1).mean())

    bounds = model.prior.kl_bounds(*model.encode(x), model.log_pi, None, ("greedy", "lse"))
    np.testing.assert_allclose(got["spread_ratio"], spread(means_p) / spread(means_x), rtol=1e-6)
    np.testing.assert_allclose(got["members_used"],
                               math.exp(-(r_bar * np.log(r_bar)).sum()) / 4, rtol=1e-6)
    np.testing.assert_allclose(got["resp_perplexity"], perp / 4, rtol=1e-6)
    np.testing.assert_allclose(got["bound_gap"], (bounds["greedy"].detach().numpy() - kl).mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(got["lse_gap"], (bounds["lse"].detach().numpy() - kl).mean(),
                               rtol=1e-6)


def test_identical_members_read_as_collapsed():
    model = _model(M=3, K=5)
    with torch.no_grad():
        model.prior.pseudo_inputs.copy_(torch.rand(1, 16, dtype=torch.float64).expand(5, -1))
    got = collapse_diagnostics(model, torch.rand(20, 16, dtype=torch.float64))
    assert got["spread_ratio"] < 1e-6
    assert is_collapsed(got["spread_ratio"], got["resp_perplexity"], epoch=3, warmup_epochs=2)
    assert abs(got["resp_perplexity"] - 1) < 1e-6 and abs(got["members_used"] - 1) < 1e-6
    assert abs(got["bound_gap"] - got["lse_gap"]) < 1e-6  # Jensen's gap is gone: U = U_lse


def test_standard_prior_has_no_diagnostics():
    got = collapse_diagnostics(_model(prior="standard"), torch.rand(3, 16, dtype=torch.float64))
    assert got == dict.fromkeys(DIAGNOSTICS)
    assert is_collapsed(None, None, 5, 2) is None


def test_the_rule_needs_both_spread_and_perplexity_and_waits_for_the_warm_up():
    small, big = COLLAPSE_SPREAD / 2, 2 * COLLAPSE_SPREAD
    alike, distinct = (1 + COLLAPSE_PERPLEXITY) / 2, COLLAPSE_PERPLEXITY / 2
    assert is_collapsed(small, alike, 5, 4) is True
    assert is_collapsed(small, distinct, 5, 4) is False  # narrow but distinct members
    assert is_collapsed(big, alike, 5, 4) is False
    assert is_collapsed(small, alike, 3, 4) is None  # still warming up: undecided
    assert is_collapsed(small, alike, 4, 4) is True  # β reached 1 at epoch 4
    assert is_collapsed(small, alike, 1, 0) is True  # no warm-up
    assert is_collapsed(small, float("nan"), 5, 4) is None


class _Prior(torch.nn.Module):
    """K fixed members N(m_k, σ² I) (the attributes collapse_diagnostics reads)."""

    def __init__(self, means: torch.Tensor, sigma: float) -> None:
        super().__init__()
        self.pseudo_images = means
        self.mu = means[:, None]
        self.logvar = torch.full_like(self.mu, 2 * math.log(sigma))

    def components(self) -> PriorComponents:
        return PriorComponents(self.mu, self.logvar, torch.zeros(self.mu.shape[:2]))

    def kl_bounds(self, mu, logvar, log_pi, comps, names):
        return {n: torch.zeros(mu.shape[0], dtype=mu.dtype) for n in names}


class _Model(torch.nn.Module):
    """M = 1; the 'encoder' maps an image (a row of data means) to N(x, σ_x² I)."""

    def __init__(self, prior: _Prior, sigma_x: float) -> None:
        super().__init__()
        self.prior, self.sigma_x = prior, sigma_x
        self.pi = torch.ones(1, dtype=torch.float64)
        self.log_pi = torch.zeros(1, dtype=torch.float64)

    def encode(self, x):
        return x[:, None], torch.full_like(x[:, None], 2 * math.log(self.sigma_x))

    def log_q(self, z, mu, logvar):
        return log_mixture_diag(z, mu, logvar, self.log_pi)


def test_distinct_narrow_members_are_not_collapsed():
    # issue 14's synthetic case: D = 40, spread ratio ≈ 0.04, member σ 0.1 — the members sit
    # far apart relative to their width, so each z belongs to one member (perplexity ≪ 1)
    g = torch.Generator().manual_seed(0)
    d, k, n = 40, 10, 400
    members = 0.04 * torch.randn(k, d, generator=g, dtype=torch.float64)
    model = _Model(_Prior(members, 0.1), sigma_x=0.05)
    # the data's posterior means: around the members, spread ≈ 25× wider than the members
    x = members[torch.arange(n) % k] + torch.randn(n, d, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    got = collapse_diagnostics(model, x)
    assert 0.02 < got["spread_ratio"] < COLLAPSE_SPREAD
    assert got["resp_perplexity"] < 0.2
    assert is_collapsed(got["spread_ratio"], got["resp_perplexity"], 10, 4) is False
    # the same members made identical: collapsed
    same = _Model(_Prior(members[:1].expand(k, d).clone(), 0.1), sigma_x=0.05)
    got = collapse_diagnostics(same, x)
    assert is_collapsed(got["spread_ratio"], got["resp_perplexity"], 10, 4) is True
