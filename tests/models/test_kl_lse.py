"""The log-sum-exp bound U_lse (models/kl.py): against an independent NumPy Monte Carlo estimate
of the true KL to the pseudo-input mixture (MC − 4 SE ≤ U_lse ≤ U on 1000 random pairs), the
closed form of the Gibbs minimum over weights φ, equality for K = 1, finite gradients."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import logsumexp

from models.kl import lse_of_bounds, pseudo_mixture_bound, pseudo_mixture_lse_bound


def _pairs(n: int, k: int, m: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    mu = 1.5 * torch.randn(n, m, d, generator=g, dtype=torch.float64)
    lv = torch.empty(n, m, d, dtype=torch.float64).uniform_(-1.0, 1.0, generator=g)
    mu_p = 1.5 * torch.randn(k, m, d, generator=g, dtype=torch.float64)
    lv_p = torch.empty(k, m, d, dtype=torch.float64).uniform_(-1.0, 1.0, generator=g)
    w = torch.rand(m, generator=g, dtype=torch.float64) + 0.2
    return mu, lv, mu_p, lv_p, torch.log(w / w.sum())


def _np_log_mix(z: np.ndarray, mu: np.ndarray, lv: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    """log Σ_c w_c N(z; μ_c, σ_c²): z (S, N, D), mu/lv (N or 1, C, D), log_w (C,) → (S, N)."""
    diff = z[:, :, None, :] - mu[None]  # (S, N, C, D)
    comp = -0.5 * (diff**2 / np.exp(lv[None]) + lv[None] + math.log(2 * math.pi)).sum(-1)
    return logsumexp(comp + log_w, axis=-1)


def _mc_kl(mu, lv, mu_p, lv_p, log_pi, samples: int, seed: int):
    """Independent MC estimate of KL(q ‖ (1/K) Σ_k q(·|a_k)) per pair, NumPy: (mean, SE)."""
    rng = np.random.default_rng(seed)
    mu, lv, mu_p, lv_p, log_pi = (t.numpy() for t in (mu, lv, mu_p, lv_p, log_pi))
    n, m, d = mu.shape
    k = mu_p.shape[0]
    comp = rng.choice(m, size=(samples, n), p=np.exp(log_pi))  # (S, N)
    idx = np.arange(n)[None, :]
    z = mu[idx, comp] + np.exp(0.5 * lv[idx, comp]) * rng.standard_normal((samples, n, d))
    log_q = _np_log_mix(z, mu, lv, log_pi)
    prior_w = np.tile(log_pi, k) - math.log(k)  # (K·M,)
    log_p = _np_log_mix(z, mu_p.reshape(1, k * m, d), lv_p.reshape(1, k * m, d), prior_w)
    diff = log_q - log_p  # (S, N)
    return diff.mean(0), diff.std(0, ddof=1) / math.sqrt(samples)


def test_lse_between_monte_carlo_kl_and_the_papers_bound_on_1000_pairs():
    for m, k, seed in ((1, 5, 0), (2, 4, 1), (3, 6, 2)):
        mu, lv, mu_p, lv_p, log_pi = _pairs(1000, k, m, 3, seed)
        u = pseudo_mixture_bound(mu, lv, mu_p, lv_p, log_pi).mean(-1).numpy()
        lse = pseudo_mixture_lse_bound(mu, lv, mu_p, lv_p, log_pi).numpy()
        kl, se = _mc_kl(mu, lv, mu_p, lv_p, log_pi, samples=2000, seed=seed)
        assert lse.shape == (1000,)
        assert np.all(lse <= u + 1e-10)
        assert np.all(kl - 4 * se <= lse), np.max(kl - 4 * se - lse)
        assert np.mean(u - lse) > 0.1  # strictly tighter on random (diverse) priors


def test_lse_is_the_gibbs_minimum_over_weights_on_pseudo_inputs():
    """−log (1/K) Σ exp(−B_k) = min_φ Σ φ_k (log K φ_k + B_k): attained at softmax(−B), and no
    random φ on the simplex does better."""
    rng = np.random.default_rng(3)
    bounds = rng.uniform(0.0, 30.0, size=(200, 7))
    lse = lse_of_bounds(torch.from_numpy(bounds)).numpy()

    def objective(phi):
        return (phi * (np.log(7 * phi) + bounds)).sum(-1)

    gibbs = np.exp(-bounds - logsumexp(-bounds, axis=-1, keepdims=True))
    np.testing.assert_allclose(objective(gibbs), lse, rtol=1e-10, atol=1e-10)
    for _ in range(50):
        phi = rng.dirichlet(np.ones(7), size=200)
        assert np.all(objective(phi) >= lse - 1e-10)


def test_lse_equals_the_papers_bound_for_one_pseudo_input_and_for_identical_members():
    mu, lv, mu_p, lv_p, log_pi = _pairs(50, 1, 2, 4, 4)
    for matching in ("greedy", "optimal"):
        u = pseudo_mixture_bound(mu, lv, mu_p, lv_p, log_pi, matching).mean(-1)
        lse = pseudo_mixture_lse_bound(mu, lv, mu_p, lv_p, log_pi, matching)
        torch.testing.assert_close(lse, u, rtol=1e-12, atol=1e-12)
    same_mu, same_lv = mu_p.expand(9, -1, -1), lv_p.expand(9, -1, -1)  # a collapsed prior
    u = pseudo_mixture_bound(mu, lv, same_mu, same_lv, log_pi).mean(-1)
    torch.testing.assert_close(pseudo_mixture_lse_bound(mu, lv, same_mu, same_lv, log_pi), u)


def test_lse_gradients_are_finite_and_weight_members_by_responsibility():
    mu, lv, mu_p, lv_p, log_pi = _pairs(8, 5, 2, 3, 5)
    mu_p = (mu_p * 20).requires_grad_(True)  # far-apart members: huge B, exp(−B) underflows
    mu.requires_grad_(True)
    lse = pseudo_mixture_lse_bound(mu, lv, mu_p, lv_p, log_pi)
    assert torch.isfinite(lse).all()
    lse.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(mu_p.grad).all()
    bounds = torch.tensor([[1.0, 2.0, 50.0]], requires_grad=True)
    lse_of_bounds(bounds).sum().backward()
    torch.testing.assert_close(bounds.grad, torch.softmax(-bounds.detach(), -1))
