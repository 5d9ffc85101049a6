"""models/distributions.py: Gaussian and mixture log-densities against SciPy, and the samplers'
statistics (stratified: per-component moments; by component: frequencies ≈ π)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from models.distributions import (
    log_mixture_diag,
    log_mixture_diag_flat,
    log_normal_diag,
    log_normal_diag_pairs,
    sample_mixture,
    sample_stratified,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_log_normal_diag_equals_torch_normal():
    g = _gen()
    x, mu, logvar = (torch.randn(4, 3, 5, generator=g, dtype=torch.float64) for _ in range(3))
    expected = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(x).sum(-1)
    torch.testing.assert_close(log_normal_diag(x, mu, logvar), expected)


def test_log_normal_diag_pairs_equals_broadcast():
    g = _gen(1)
    z = 2 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    mu = torch.randn(9, 4, generator=g, dtype=torch.float64)
    logvar = torch.empty(9, 4, dtype=torch.float64).uniform_(-6, 2, generator=g)
    expected = log_normal_diag(z[:, None], mu[None], logvar[None])  # (6, 9)
    torch.testing.assert_close(log_normal_diag_pairs(z, mu, logvar), expected)


def _scipy_mixture(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray, pi: np.ndarray) -> float:
    comps = [
        np.log(pi[c]) + multivariate_normal(mu[c], np.diag(np.exp(logvar[c]))).logpdf(z)
        for c in range(len(pi))
    ]
    return float(logsumexp(comps))


@pytest.mark.parametrize("n_comp", [1, 3])
def test_log_mixture_diag_equals_scipy(n_comp: int):
    g = _gen(2)
    batch, dim = 5, 4
    z = torch.randn(2, batch, dim, generator=g, dtype=torch.float64)  # extra sample dim
    mu = torch.randn(batch, n_comp, dim, generator=g, dtype=torch.float64)
    logvar = torch.empty(batch, n_comp, dim, dtype=torch.float64).uniform_(-3, 1, generator=g)
    pi = torch.rand(n_comp, generator=g, dtype=torch.float64) + 0.1
    pi = pi / pi.sum()
    got = log_mixture_diag(z, mu, logvar, torch.log(pi))  # (2, B)
    assert got.shape == (2, batch)
    for s in range(2):
        for b in range(batch):
            expected = _scipy_mixture(z[s, b].numpy(), mu[b].numpy(), logvar[b].numpy(), pi.numpy())
            assert got[s, b].item() == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_log_mixture_diag_flat_equals_scipy():
    g = _gen(3)
    n_comp, dim = 7, 3
    z = torch.randn(4, 2, dim, generator=g, dtype=torch.float64)
    mu = torch.randn(n_comp, dim, generator=g, dtype=torch.float64)
    logvar = torch.empty(n_comp, dim, dtype=torch.float64).uniform_(-2, 1, generator=g)
    w = torch.softmax(torch.randn(n_comp, generator=g, dtype=torch.float64), 0)
    got = log_mixture_diag_flat(z, mu, logvar, torch.log(w))
    assert got.shape == (4, 2)
    for i in range(4):
        for j in range(2):
            expected = _scipy_mixture(z[i, j].numpy(), mu.numpy(), logvar.numpy(), w.numpy())
            assert got[i, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_log_mixture_float32_close_to_float64():
    g = _gen(4)
    z = torch.randn(50, 40, generator=g, dtype=torch.float64)
    mu = torch.randn(300, 40, generator=g, dtype=torch.float64)
    logvar = torch.empty(300, 40, dtype=torch.float64).uniform_(-6, 2, generator=g)
    w = torch.full((300,), -np.log(300.0), dtype=torch.float64)
    exact = log_mixture_diag_flat(z, mu, logvar, w)
    single = log_mixture_diag_flat(z.float(), mu.float(), logvar.float(), w.float())
    torch.testing.assert_close(single.double(), exact, rtol=1e-5, atol=1e-2)


def test_sample_stratified_moments():
    torch.manual_seed(0)
    n = 20_000
    mu = torch.tensor([[[-2.0, 0.5], [3.0, 1.0], [0.0, -1.0]]])  # (1, M=3, D=2)
    logvar = torch.tensor([[[0.0, -2.0], [1.0, 0.5], [-4.0, 0.0]]])
    z = sample_stratified(mu.expand(n, 3, 2), logvar.expand(n, 3, 2))  # (n, 3, 2)
    assert z.shape == (n, 3, 2)
    var = torch.exp(logvar[0])
    se_mean = torch.sqrt(var / n)
    assert ((z.mean(0) - mu[0]).abs() < 5 * se_mean).all()
    se_var = var * np.sqrt(2.0 / (n - 1))  # sd of the sample variance of a Gaussian
    assert ((z.var(0) - var).abs() < 5 * se_var).all()


def test_sample_stratified_is_reparameterised():
    mu = torch.zeros(2, 3, 4, requires_grad=True)
    logvar = torch.zeros(2, 3, 4, requires_grad=True)
    sample_stratified(mu, logvar).sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    assert logvar.grad.abs().sum() > 0


def test_sample_mixture_component_frequencies_match_pi():
    torch.manual_seed(1)
    n, pi = 30_000, torch.tensor([0.2, 0.5, 0.3])
    mu = torch.tensor([[[-100.0], [0.0], [100.0]], [[100.0], [0.0], [-100.0]]])  # (B=2, 3, 1)
    logvar = torch.full_like(mu, -4.0)
    z = sample_mixture(mu, logvar, pi, n)  # (n, 2, 1)
    assert z.shape == (n, 2, 1)
    for b in range(2):
        comp = (z[:, b, 0] - mu[b, :, 0][:, None]).abs().argmin(0)  # nearest mean, (n,)
        freq = torch.bincount(comp, minlength=3).double() / n
        se = torch.sqrt(pi.double() * (1 - pi.double()) / n)
        assert ((freq - pi.double()).abs() < 5 * se).all(), freq
        # Within a component, the draw is N(μ_m, σ²_m).
        inner = z[:, b, 0] - mu[b, comp, 0]
        assert abs(inner.std().item() - np.exp(-2.0)) < 0.01


def test_sample_mixture_gradient_reaches_chosen_means():
    mu = torch.zeros(3, 2, 4, requires_grad=True)
    logvar = torch.zeros(3, 2, 4)
    sample_mixture(mu, logvar, torch.tensor([0.5, 0.5]), 10).sum().backward()
    assert mu.grad.sum().item() == pytest.approx(10 * 3 * 4)
