"""models/kl.py: closed-form KLs against torch.distributions; greedy (eq. 13) and optimal
matchings; the matched bound (eq. 12) against brute force and against a Monte Carlo estimate of
the true mixture KL; the batched U(x) (eq. 18/22) against a slow double loop."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from torch.distributions import Independent, Normal, kl_divergence

import models.kl as kl_module
from models.kl import (
    gaussian_kl,
    gaussian_kl_pairs,
    gaussian_kl_standard,
    greedy_matching,
    matched_bound,
    mc_kl,
    optimal_matching,
    pseudo_mixture_bound,
    visit_order,
)


def _normal(mu: torch.Tensor, logvar: torch.Tensor) -> Independent:
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


def _random_gaussians(shape, seed, dtype=torch.float64, low=-6.0, high=2.0):
    g = torch.Generator().manual_seed(seed)
    mu = 2 * torch.randn(*shape, generator=g, dtype=dtype)
    logvar = torch.empty(*shape, dtype=dtype).uniform_(low, high, generator=g)
    return mu, logvar


# ----------------------------------------------------------------------------------------------
# Closed-form Gaussian KLs


def test_gaussian_kl_equals_torch_kl_divergence():
    mu1, lv1 = _random_gaussians((20, 6), 0)
    mu2, lv2 = _random_gaussians((20, 6), 1)
    expected = kl_divergence(_normal(mu1, lv1), _normal(mu2, lv2))
    torch.testing.assert_close(gaussian_kl(mu1, lv1, mu2, lv2), expected)
    zero = torch.zeros_like(mu1)
    torch.testing.assert_close(
        gaussian_kl_standard(mu1, lv1), kl_divergence(_normal(mu1, lv1), _normal(zero, zero))
    )


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_gaussian_kl_pairs_equals_torch_kl_divergence(dtype, tol):
    mu_q, lv_q = _random_gaussians((4, 3, 40), 2)
    mu_p, lv_p = _random_gaussians((5, 3, 40), 3)
    expected = kl_divergence(  # (B, K, M, N) by broadcasting
        _normal(mu_q[:, None, :, None], lv_q[:, None, :, None]),
        _normal(mu_p[None, :, None], lv_p[None, :, None]),
    )
    got = gaussian_kl_pairs(*(t.to(dtype) for t in (mu_q, lv_q, mu_p, lv_p)))
    assert got.shape == (4, 5, 3, 3)
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


def test_gaussian_kl_pairs_gradients_match_broadcast_formula():
    mu_q, lv_q = (t.requires_grad_() for t in _random_gaussians((3, 2, 5), 4))
    mu_p, lv_p = (t.requires_grad_() for t in _random_gaussians((4, 2, 5), 5))
    weights = torch.rand(3, 4, 2, 2, dtype=torch.float64)
    fast = torch.autograd.grad(
        (weights * gaussian_kl_pairs(mu_q, lv_q, mu_p, lv_p)).sum(), (mu_q, lv_q, mu_p, lv_p)
    )
    slow_kl = gaussian_kl(
        mu_q[:, None, :, None], lv_q[:, None, :, None], mu_p[None, :, None], lv_p[None, :, None]
    )
    slow = torch.autograd.grad((weights * slow_kl).sum(), (mu_q, lv_q, mu_p, lv_p))
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------------------------
# Independent NumPy references for random mixture pairs


def _np_kl_matrix(mu_q, lv_q, mu_p, lv_p):
    """[i, m, n] = KL(q_im ‖ p_in) from the textbook formula, (N, M, M)."""
    v_q, v_p = np.exp(lv_q)[:, :, None], np.exp(lv_p)[:, None]
    diff = mu_q[:, :, None] - mu_p[:, None]
    return 0.5 * (np.log(v_p / v_q) + (v_q + diff**2) / v_p - 1.0).sum(-1)


def _np_brute_force(kl, pi_q, pi_p):
    """min over all permutations β of B_β (eq. 12): (N,)."""
    n_comp = kl.shape[-1]
    rows = np.arange(n_comp)
    values = [
        (pi_q * (np.log(pi_q) - np.log(pi_p[:, perm]) + kl[:, rows, perm])).sum(-1)
        for perm in map(list, itertools.permutations(range(n_comp)))
    ]
    return np.min(values, axis=0)


def _np_log_mixture(z, mu, lv, pi):
    """z (S, N, D); mixture (N, M, D), pi (N, M) → log density (S, N)."""
    diff = z[:, :, None] - mu[None]  # (S, N, M, D)
    log_comp = -0.5 * (np.log(2 * np.pi) + lv[None] + diff**2 / np.exp(lv[None])).sum(-1)
    return logsumexp(log_comp + np.log(pi)[None], axis=-1)


def _np_mc_kl(mu_q, lv_q, pi_q, mu_p, lv_p, pi_p, n_samples, rng):
    """Stratified MC estimate of KL(q ‖ p) per pair: mean and standard error, (N,) each."""
    per_sample = []
    for _ in range(n_samples // 250):
        eps = rng.standard_normal((250, *mu_q.shape))  # (s, N, M, D)
        z = mu_q[None] + np.exp(0.5 * lv_q)[None] * eps
        n_pairs, n_comp, dim = mu_q.shape
        flat = z.transpose(0, 2, 1, 3).reshape(250 * n_comp, n_pairs, dim)  # (s·M, N, D)
        f = _np_log_mixture(flat, mu_q, lv_q, pi_q) - _np_log_mixture(flat, mu_p, lv_p, pi_p)
        f = f.reshape(250, n_comp, n_pairs)
        per_sample.append((pi_q.T[None] * f).sum(1))  # (s, N)
    values = np.concatenate(per_sample)
    return values.mean(0), values.std(0, ddof=1) / np.sqrt(values.shape[0])


@pytest.mark.parametrize("n_comp", [2, 3, 4])
def test_random_mixture_pairs_greedy_optimal_brute_force_and_mc(n_comp: int):
    rng = np.random.default_rng(n_comp)
    n_pairs, dim = 1000, 2
    mu_q, mu_p = 1.5 * rng.standard_normal((2, n_pairs, n_comp, dim))
    lv_q, lv_p = rng.uniform(-1.5, 1.0, (2, n_pairs, n_comp, dim))
    pi_q, pi_p = rng.dirichlet(np.ones(n_comp), (2, n_pairs))
    kl_np = _np_kl_matrix(mu_q, lv_q, mu_p, lv_p)

    mq, lq, mp, lp = (torch.from_numpy(a) for a in (mu_q, lv_q, mu_p, lv_p))
    kl_t = gaussian_kl(mq[:, :, None], lq[:, :, None], mp[:, None], lp[:, None])  # (N, M, M)
    np.testing.assert_allclose(kl_t.numpy(), kl_np, rtol=1e-9, atol=1e-9)
    log_pi_q, log_pi_p = torch.from_numpy(np.log(pi_q)), torch.from_numpy(np.log(pi_p))
    greedy = matched_bound(kl_t, log_pi_q, log_pi_p, greedy_matching(kl_t, log_pi_q, log_pi_p))
    optimal = matched_bound(kl_t, log_pi_q, log_pi_p, optimal_matching(kl_t, log_pi_q, log_pi_p))

    assert (optimal <= greedy + 1e-9).all()
    np.testing.assert_allclose(optimal.numpy(), _np_brute_force(kl_np, pi_q, pi_p), atol=1e-9)
    # The bounds U(x) uses (from the greedy pass's values; a minimum over permutations) agree.
    rows = kl_module._cost_rows(kl_t, log_pi_p)
    torch.testing.assert_close(kl_module._greedy_bound_rows(rows, log_pi_q), greedy)
    torch.testing.assert_close(kl_module._optimal_bound_rows(rows, log_pi_q), optimal)
    assert (optimal < greedy - 1e-6).any()  # greedy is not always optimal on random pairs
    mean, se = _np_mc_kl(mu_q, lv_q, pi_q, mu_p, lv_p, pi_p, 1000, rng)
    assert (greedy.numpy() >= mean - 4 * se).all()
    assert (optimal.numpy() >= mean - 4 * se).all()


# ----------------------------------------------------------------------------------------------
# Hand-made cases


def test_greedy_differs_from_optimal_on_a_hand_made_case():
    kl = torch.tensor([[0.0, 1.0], [0.1, 100.0]])
    log_pi = torch.log(torch.tensor([0.5, 0.5]))
    greedy = greedy_matching(kl, log_pi, log_pi)  # m=0 first takes n=0, m=1 is left with n=1
    optimal = optimal_matching(kl, log_pi, log_pi)
    assert greedy.tolist() == [0, 1]
    assert optimal.tolist() == [1, 0]
    assert matched_bound(kl, log_pi, log_pi, greedy).item() == pytest.approx(50.0)
    assert matched_bound(kl, log_pi, log_pi, optimal).item() == pytest.approx(0.55)


def test_greedy_visits_components_by_decreasing_pi_ties_lower_index_first():
    kl = torch.tensor([[0.0, 5.0, 10.0]] * 3)  # every component prefers n = 0, then 1, then 2
    uniform = torch.log(torch.full((3,), 1 / 3))
    # π = (0.2, 0.5, 0.3): visit 1, 2, 0.
    pi = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    assert visit_order(pi).tolist() == [1, 2, 0]
    assert greedy_matching(kl, pi, uniform).tolist() == [2, 0, 1]
    # π = (0.25, 0.5, 0.25): visit 1, then the tie 0 before 2.
    pi = torch.log(torch.tensor([0.25, 0.5, 0.25]))
    assert visit_order(pi).tolist() == [1, 0, 2]
    assert greedy_matching(kl, pi, uniform).tolist() == [1, 0, 2]
    # Uniform π: index order.
    assert greedy_matching(kl, uniform, uniform).tolist() == [0, 1, 2]
    # Batched weights: each item has its own order.
    both = torch.stack([torch.log(torch.tensor([0.2, 0.5, 0.3])), uniform])  # (2, 3)
    assert greedy_matching(kl.expand(2, 3, 3), both, uniform).tolist() == [[2, 0, 1], [0, 1, 2]]


def test_greedy_uses_minus_log_pi_prime_and_lower_n_on_ties():
    kl = torch.zeros(2, 2)
    pi_q = torch.log(torch.tensor([0.5, 0.5]))
    assert greedy_matching(kl, pi_q, pi_q).tolist() == [0, 1]  # tie → lower n
    pi_p = torch.log(torch.tensor([0.3, 0.7]))
    assert greedy_matching(kl, pi_q, pi_p).tolist() == [1, 0]  # larger π' wins at equal KL


# ----------------------------------------------------------------------------------------------
# Optimal matching beyond enumeration


@pytest.mark.parametrize("n_comp", [5, 6])
def test_optimal_matching_larger_m_equals_brute_force(n_comp: int, monkeypatch):
    monkeypatch.setattr(kl_module, "_CHUNK_ELEMENTS", 2000)  # exercise the chunking too
    rng = np.random.default_rng(10 + n_comp)
    kl_np = rng.exponential(2.0, (40, n_comp, n_comp))
    pi = rng.dirichlet(np.ones(n_comp), 40)
    kl_t, log_pi = torch.from_numpy(kl_np), torch.from_numpy(np.log(pi))
    beta = optimal_matching(kl_t, log_pi, log_pi)
    assert sorted(beta[0].tolist()) == list(range(n_comp))
    got = matched_bound(kl_t, log_pi, log_pi, beta).numpy()
    np.testing.assert_allclose(got, _np_brute_force(kl_np, pi, pi), atol=1e-9)


@pytest.mark.parametrize("path", ["enumerate", "subsets", "hungarian"])
def test_every_optimal_matching_path_equals_brute_force(path: str, monkeypatch):
    n_comp = 4
    limits = {"enumerate": (4, 10), "subsets": (1, 10), "hungarian": (1, 1)}[path]
    monkeypatch.setattr(kl_module, "ENUMERATE_MAX_M", limits[0])
    monkeypatch.setattr(kl_module, "DP_MAX_M", limits[1])
    rng = np.random.default_rng(20)
    kl_np = rng.exponential(2.0, (30, n_comp, n_comp))
    pi = rng.dirichlet(np.ones(n_comp), 30)
    kl_t, log_pi = torch.from_numpy(kl_np), torch.from_numpy(np.log(pi))
    got = matched_bound(kl_t, log_pi, log_pi, optimal_matching(kl_t, log_pi, log_pi)).numpy()
    np.testing.assert_allclose(got, _np_brute_force(kl_np, pi, pi), atol=1e-9)


# ----------------------------------------------------------------------------------------------
# U(x): the pseudo-input mixture bound


def _slow_greedy(kl: np.ndarray, pi: np.ndarray) -> list[int]:
    beta, used = [0] * len(pi), set()
    for m in sorted(range(len(pi)), key=lambda m: (-pi[m], m)):
        free = [n for n in range(len(pi)) if n not in used]
        n = free[int(np.argmin([kl[m, n] - np.log(pi[n]) for n in free]))]  # ties: lower n
        beta[m] = n
        used.add(n)
    return beta


def _bound(kl: np.ndarray, pi: np.ndarray, beta) -> float:
    return float(sum(pi[m] * (np.log(pi[m] / pi[n]) + kl[m, n]) for m, n in enumerate(beta)))


def test_pseudo_mixture_bound_equals_slow_double_loop():
    batch, k, n_comp, dim = 3, 4, 3, 5
    mu, lv = _random_gaussians((batch, n_comp, dim), 30, low=-2.0, high=1.0)
    mu_p, lv_p = _random_gaussians((k, n_comp, dim), 31, low=-2.0, high=1.0)
    pi = np.array([0.3, 0.45, 0.25])
    log_pi = torch.from_numpy(np.log(pi))
    fast_greedy = pseudo_mixture_bound(mu, lv, mu_p, lv_p, log_pi, "greedy")
    fast_optimal = pseudo_mixture_bound(mu, lv, mu_p, lv_p, log_pi, "optimal")
    assert fast_greedy.shape == fast_optimal.shape == (batch, k)
    for b in range(batch):
        for j in range(k):
            kl = np.array(
                [
                    [
                        kl_divergence(
                            _normal(mu[b, m], lv[b, m]), _normal(mu_p[j, n], lv_p[j, n])
                        ).item()
                        for n in range(n_comp)
                    ]
                    for m in range(n_comp)
                ]
            )
            greedy = _bound(kl, pi, _slow_greedy(kl, pi))
            optimal = min(_bound(kl, pi, p) for p in itertools.permutations(range(n_comp)))
            assert fast_greedy[b, j].item() == pytest.approx(greedy, rel=1e-10)
            assert fast_optimal[b, j].item() == pytest.approx(optimal, rel=1e-10)


def test_m1_greedy_equals_optimal_equals_mean_closed_form_kl():
    mu, lv = _random_gaussians((6, 1, 8), 40)
    mu_p, lv_p = _random_gaussians((9, 1, 8), 41)
    log_pi = torch.zeros(1, dtype=torch.float64)
    greedy = pseudo_mixture_bound(mu, lv, mu_p, lv_p, log_pi, "greedy").mean(-1)
    optimal = pseudo_mixture_bound(mu, lv, mu_p, lv_p, log_pi, "optimal").mean(-1)
    expected = kl_divergence(
        _normal(mu[:, None, 0], lv[:, None, 0]), _normal(mu_p[None, :, 0], lv_p[None, :, 0])
    ).mean(-1)
    torch.testing.assert_close(greedy, expected)
    torch.testing.assert_close(optimal, expected)


def test_pseudo_mixture_bound_gradients_equal_matched_bound_gradients():
    mu, lv = (t.requires_grad_() for t in _random_gaussians((4, 3, 6), 52, low=-2.0, high=1.0))
    mu_p, lv_p = (t.requires_grad_() for t in _random_gaussians((5, 3, 6), 53, low=-2.0, high=1.0))
    log_pi = torch.log(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))
    inputs = (mu, lv, mu_p, lv_p)
    for matching, match in (("greedy", greedy_matching), ("optimal", optimal_matching)):
        fast = torch.autograd.grad(
            pseudo_mixture_bound(mu, lv, mu_p, lv_p, log_pi, matching).sum(), inputs
        )
        kl = gaussian_kl(
            mu[:, None, :, None], lv[:, None, :, None], mu_p[None, :, None], lv_p[None, :, None]
        )  # (B, K, M, M), broadcast
        slow = torch.autograd.grad(
            matched_bound(kl, log_pi, log_pi, match(kl, log_pi, log_pi)).sum(), inputs
        )
        for a, b in zip(fast, slow, strict=True):
            torch.testing.assert_close(a, b)


def test_pseudo_mixture_bound_gradients_flow_to_both_sides():
    mu, lv = (t.float().requires_grad_() for t in _random_gaussians((4, 3, 6), 50))
    mu_p, lv_p = (t.float().requires_grad_() for t in _random_gaussians((5, 3, 6), 51))
    log_pi = torch.log(torch.full((3,), 1 / 3))
    for matching in ("greedy", "optimal"):
        bound = pseudo_mixture_bound(mu, lv, mu_p, lv_p, log_pi, matching).mean()
        grads = torch.autograd.grad(bound, (mu, lv, mu_p, lv_p))
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


# ----------------------------------------------------------------------------------------------
# Monte Carlo KL


def test_mc_kl_is_log_q_minus_log_p_and_unbiased_for_m1():
    torch.manual_seed(0)
    mu, lv = _random_gaussians((3, 1, 4), 60, low=-1.0, high=0.5)
    z = mu[:, 0] + torch.exp(0.5 * lv[:, 0]) * torch.randn(20_000, 3, 4, dtype=torch.float64)

    def std_normal(z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)

    values = mc_kl(z, mu, lv, torch.zeros(1, dtype=torch.float64), std_normal)  # (S, B)
    assert values.shape == (20_000, 3)
    expected = gaussian_kl_standard(mu[:, 0], lv[:, 0])
    se = values.std(0) / math.sqrt(values.shape[0])
    assert ((values.mean(0) - expected).abs() < 5 * se).all()


@pytest.mark.parametrize("estimator", ["greedy", "optimal"])
def test_device_path_of_shared_weights_equals_the_host_path(monkeypatch, estimator):
    """On a GPU, shared weights π are not read back to the host (no sync per step): the
    per-item tensor path is used. Both paths give the same bounds (forced here on CPU)."""
    from models import kl as kl_module

    gen = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(6, 3, 4, generator=gen), 0.3 * torch.randn(6, 3, 4, generator=gen)
    mu_p, logvar_p = torch.randn(5, 3, 4, generator=gen), 0.3 * torch.randn(5, 3, 4, generator=gen)
    log_pi = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    host = kl_module.pseudo_mixture_bounds(mu, logvar, mu_p, logvar_p, log_pi, (estimator,))
    monkeypatch.setattr(kl_module, "_weights_on_host", lambda log_pi_q: False)
    device = kl_module.pseudo_mixture_bounds(mu, logvar, mu_p, logvar_p, log_pi, (estimator,))
    torch.testing.assert_close(device[estimator], host[estimator], rtol=1e-6, atol=1e-5)
