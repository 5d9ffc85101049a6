"""KL divergences and the matched-component bounds of GMMpVAE (eq. 12, 13, 18/22;
docs/MATH.md#matched-bound).

All functions are pure and batched. Shapes: B batch, K pseudo-inputs (prior members), M mixture
components, D latent size. A "KL matrix" ``kl`` (..., M, M) holds [m, n] = KL(q_m ‖ p_n).

Reads top to bottom: Gaussian KLs, matchings β (greedy eq. 13, optimal), the matched bound B_β
(eq. 12), the pseudo-input mixture bound U(x) (eq. 18/22), its log-sum-exp refinement U_lse(x)
(ours, not in the paper), the Monte Carlo KL.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from models.distributions import log_mixture_diag

# Optimal matching: enumerate the M! permutations up to this M, dynamic programming over
# subsets of components (2^M · M work per item) up to DP_MAX_M, scipy's Hungarian solver beyond.
ENUMERATE_MAX_M = 4
DP_MAX_M = 10
_CHUNK_ELEMENTS = 1 << 22  # bound on the temporary elements of one optimal-matching chunk


# ----------------------------------------------------------------------------------------------
# Gaussian KLs (closed form)


def gaussian_kl(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(μ₁, diag σ₁²) ‖ N(μ₂, diag σ₂²)) summed over the last axis; (..., D) broadcast → (...).

    ½ Σ_d [log σ₂² − log σ₁² + (σ₁² + (μ₁ − μ₂)²) / σ₂² − 1] (docs/MATH.md#gaussian-kl).
    """
    ratio = (torch.exp(logvar1) + (mu1 - mu2).square()) * torch.exp(-logvar2)  # (..., D)
    return 0.5 * (logvar2 - logvar1 + ratio - 1.0).sum(-1)


def gaussian_kl_standard(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_d [μ² + σ² − 1 − log σ²]; (..., D) → (...)."""
    return 0.5 * (mu.square() + torch.exp(logvar) - 1.0 - logvar).sum(-1)


def _gaussian_kl_pairs_bmkn(
    mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor, offset_p: Tensor | None = None
) -> Tensor:
    """KL(q_bm ‖ p_kn) + offset_p[n] in the matrix product's own layout: q (B, M, D),
    p (K, N, D), offset_p (N,) or None → (B, M, K, N), contiguous. Row m, ``[:, m]``
    (B, K, N), is what the matchings read; offset −log π'_n makes it their assignment cost."""
    (batch, m_q, dim), (k, n_p, _) = mu_q.shape, mu_p.shape
    mu_q, logvar_q = mu_q.reshape(batch * m_q, dim), logvar_q.reshape(batch * m_q, dim)
    mu_p, logvar_p = mu_p.reshape(k * n_p, dim), logvar_p.reshape(k * n_p, dim)
    prec_p = torch.exp(-logvar_p)  # (KN, D)
    const_p = (logvar_p + mu_p.square() * prec_p).sum(-1, keepdim=True)  # (KN, 1)
    if offset_p is not None:
        const_p = const_p + 2.0 * offset_p.repeat(k)[:, None]  # halved with the rest below
    const_q = logvar_q.sum(-1, keepdim=True) + dim  # (BM, 1)
    ones_q, ones_p = torch.ones_like(const_q), torch.ones_like(const_p)
    # The constants ride along as two extra columns, so one product gives the whole KL.
    left = 0.5 * torch.cat([torch.exp(logvar_q) + mu_q.square(), mu_q, ones_q, -const_q], -1)
    right = torch.cat([prec_p, -2.0 * mu_p * prec_p, const_p, ones_p], -1)  # (KN, 2D + 2)
    return (left @ right.T).view(batch, m_q, k, n_p)  # (B, M, K, N)


def gaussian_kl_pairs(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(q_bm ‖ p_kn) for all pairs at once: q (B, M, D), p (K, N, D) → (B, K, M, N).

    One matrix product instead of a (B, K, M, N, D) tensor, expanding the square:
    Σ_d (σ_q² + (μ_q − μ_p)²)/σ_p² = Σ (σ_q² + μ_q²)/σ_p² − 2 Σ μ_q μ_p/σ_p² + Σ μ_p²/σ_p².
    The result is a transposed view of the product's (B, M, K, N) layout (no copy).
    """
    return _gaussian_kl_pairs_bmkn(mu_q, logvar_q, mu_p, logvar_p).transpose(1, 2)


# ----------------------------------------------------------------------------------------------
# Matchings β: (..., M, M) KL matrices → (..., M) component maps


def visit_order(log_pi_q: Tensor) -> Tensor:
    """Eq. 13's visiting order: components by decreasing π, ties by lower index first.
    (..., M) → (..., M) long."""
    return torch.sort(log_pi_q, dim=-1, descending=True, stable=True).indices


# The matchings work on "cost rows": M tensors (..., N), rows[m][..., n] = KL(q_m ‖ p_n) −
# log π'_n, so that the all-pairs matrix is read in its (B, M, K, N) layout: a (B, K, M, N)
# copy would move blocks of N floats (slow) where row slices move blocks of K·N. The public
# functions on (..., M, M) KL matrices build them with `_cost_rows`.


def _cost_rows(kl: Tensor, log_pi_p: Tensor) -> list[Tensor]:
    """(..., M, M) KL matrix → M cost rows (..., N): KL(q_m ‖ p_n) − log π'_n."""
    return list((kl - log_pi_p.unsqueeze(-2)).unbind(-2))


def _weights_on_host(log_pi_q: Tensor) -> bool:
    """Shared weights (M,) on the CPU are read as Python floats (fast row slices); on a GPU
    that read would synchronise with the host every step, so the device path is used."""
    return log_pi_q.dim() == 1 and log_pi_q.device.type == "cpu"


def _greedy_rows(rows: Sequence[Tensor], log_pi_q: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Greedy matching (eq. 13) on cost rows M × (..., N) → per component m (in index order)
    β(m) (..., 1) long and its cost KL(q_m ‖ p_β(m)) − log π'_β(m) (..., 1), differentiable."""
    n_comp, lead, device = len(rows), rows[0].shape[:-1], rows[0].device
    log_pi_q = log_pi_q.detach()
    host = _weights_on_host(log_pi_q)
    if host:  # one visiting order for all items: plain row slices
        order = visit_order(log_pi_q).tolist()
        ordered = [rows[m] for m in order]
    else:
        order_t = visit_order(log_pi_q).expand(*lead, n_comp)  # (..., M)
        stacked = torch.stack(list(rows))  # (M, ..., N)
        index = order_t.movedim(-1, 0).unsqueeze(-1).expand_as(stacked)  # (M, ..., N)
        ordered = list(stacked.gather(0, index).unbind(0))
    used = torch.zeros(*lead, n_comp, dtype=torch.bool, device=device)  # (..., N)
    picks, values = [], []
    for t, row in enumerate(ordered):  # one vectorised step per component, in visiting order
        with torch.no_grad():
            free = row if t == 0 else row.masked_fill(used, math.inf)
            n = free.argmin(-1, keepdim=True)  # (..., 1)
            if t < n_comp - 1:
                used = used.scatter(-1, n, True)
        picks.append(n)
        values.append(row.gather(-1, n))  # (..., 1)
    if host:
        back = [order.index(m) for m in range(n_comp)]  # visiting step of each component
        return [picks[t] for t in back], [values[t] for t in back]
    beta = torch.empty_like(order_t).scatter_(-1, order_t, torch.cat(picks, dim=-1))
    value = torch.cat(values, dim=-1)
    value = torch.zeros_like(value).scatter(-1, order_t, value)
    return list(beta.split(1, dim=-1)), list(value.split(1, dim=-1))


def greedy_matching(kl: Tensor, log_pi_q: Tensor, log_pi_p: Tensor) -> Tensor:
    """Greedy β (eq. 13): visit m by decreasing π_m (ties: lower index first) and set
    β(m) = argmin over still-unused n of KL(q_m ‖ p_n) − log π'_n (ties: lower n).

    kl (..., M, M); log_pi_q, log_pi_p (M,) or broadcastable to (..., M) → β (..., M) long.
    One vectorised step per component; no gradient (β is discrete).
    """
    with torch.no_grad():
        picks, _ = _greedy_rows(_cost_rows(kl, log_pi_p), log_pi_q)
    return torch.cat(picks, dim=-1)


@functools.cache
def _permutations(n_comp: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(n_comp)))


def _permutation_totals(rows: Sequence[Tensor], log_pi_q: Tensor) -> list[Tensor]:
    """Σ_m π_m (KL(q_m ‖ p_β(m)) − log π'_β(m)) for every permutation β — eq. 12 less the
    constant Σ_m π_m log π_m: M! × (...), differentiable; sums of strided row slices."""
    if _weights_on_host(log_pi_q):  # weights shared by all items: multiply-adds with floats
        pi = torch.exp(log_pi_q.detach()).tolist()

        def total(perm: tuple[int, ...]) -> Tensor:
            acc = pi[0] * rows[0][..., perm[0]]  # (...)
            for m in range(1, len(perm)):
                acc = acc.add(rows[m][..., perm[m]], alpha=pi[m])
            return acc

    else:  # per-item weights (..., M)
        weights = torch.exp(log_pi_q)

        def total(perm: tuple[int, ...]) -> Tensor:
            terms = [weights[..., m] * rows[m][..., n] for m, n in enumerate(perm)]
            return functools.reduce(torch.add, terms)

    return [total(perm) for perm in _permutations(len(rows))]


def _optimal_subsets(cost: Tensor) -> Tensor:
    """Exact assignment by dynamic programming over subsets of columns: cost (N, M, M) → β (N, M).

    best[S] = min over j ∈ S of best[S \\ {j}] + cost[|S| − 1, j] assigns rows 0..|S|−1 to the
    columns of S; 2^M · M vectorised steps instead of M! permutations.
    """
    n_items, n_comp = cost.shape[0], cost.shape[-1]
    n_sets = 1 << n_comp
    best = cost.new_full((n_sets, n_items), math.inf)  # (2^M, N)
    best[0] = 0.0
    choice = torch.zeros(n_sets, n_items, dtype=torch.long, device=cost.device)  # (2^M, N)
    for subset in range(1, n_sets):
        row = bin(subset).count("1") - 1
        cols = [j for j in range(n_comp) if subset >> j & 1]
        cand = torch.stack([best[subset ^ (1 << j)] + cost[:, row, j] for j in cols])  # (|S|, N)
        value, arg = cand.min(0)
        best[subset] = value
        choice[subset] = torch.tensor(cols, device=cost.device)[arg]
    beta = torch.empty(n_items, n_comp, dtype=torch.long, device=cost.device)
    subset = torch.full((1, n_items), n_sets - 1, dtype=torch.long, device=cost.device)
    for row in range(n_comp - 1, -1, -1):
        col = choice.gather(0, subset).squeeze(0)  # (N,)
        beta[:, row] = col
        subset = subset ^ (1 << col)[None]
    return beta


def _optimal_hungarian(cost: Tensor) -> Tensor:
    """Exact assignment with scipy's linear_sum_assignment, one item at a time (large M)."""
    cost_np = cost.to(torch.float64).cpu().numpy()
    beta = np.stack([linear_sum_assignment(c)[1] for c in cost_np])  # (N, M)
    return torch.as_tensor(beta, dtype=torch.long, device=cost.device)


def _optimal_rows(rows: Sequence[Tensor], log_pi_q: Tensor) -> Tensor:
    """`optimal_matching` on cost rows: M × (..., N) → β (..., M) long."""
    rows = [r.detach() for r in rows]
    log_pi_q = log_pi_q.detach()
    n_comp, lead = len(rows), rows[0].shape[:-1]
    if n_comp <= ENUMERATE_MAX_M:
        totals = torch.stack(_permutation_totals(rows, log_pi_q), dim=-1)  # (..., P)
        perms = torch.tensor(_permutations(n_comp), device=rows[0].device)  # (P, M)
        return perms.index_select(0, totals.argmin(-1).reshape(-1)).view(*lead, n_comp)
    pi = torch.exp(log_pi_q)  # (M,) or (..., M)
    cost = torch.stack([pi[..., m : m + 1] * row for m, row in enumerate(rows)], dim=-2)
    cost = cost.reshape(-1, n_comp, n_comp)  # (N_items, M, N): π_m (KL − log π'_n)
    if n_comp <= DP_MAX_M:
        chunk = max(1, _CHUNK_ELEMENTS >> n_comp)
        beta = torch.cat([_optimal_subsets(part) for part in cost.split(chunk)])
    else:
        beta = _optimal_hungarian(cost)
    return beta.view(*lead, n_comp)


def optimal_matching(kl: Tensor, log_pi_q: Tensor, log_pi_p: Tensor) -> Tensor:
    """Optimal β: the permutation minimising B_β (eq. 12) — an exact linear assignment problem.

    B_β = Σ_m π_m [log π_m − log π'_β(m) + KL(q_m ‖ p_β(m))], so the cost of m ↦ n is
    π_m (KL(q_m ‖ p_n) − log π'_n). kl (..., M, M); log_pi_q, log_pi_p (M,) or (..., M) →
    β (..., M) long. Enumeration (M ≤ 4), subset DP (M ≤ 10) or Hungarian (larger M).
    """
    return _optimal_rows(_cost_rows(kl, log_pi_p), log_pi_q)


MATCHINGS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "greedy": greedy_matching,
    "optimal": optimal_matching,
}


# ----------------------------------------------------------------------------------------------
# Bounds


def _entropy_term(log_pi_q: Tensor) -> Tensor:
    """Σ_m π_m log π_m: (M,) or (..., M) → () or (...)."""
    return (torch.exp(log_pi_q) * log_pi_q).sum(-1)


def _matched_rows(rows: Sequence[Tensor], log_pi_q: Tensor, beta: Tensor) -> Tensor:
    """B_β on cost rows M × (..., N), β (..., M) → (...)."""
    matched = torch.cat(
        [row.gather(-1, beta[..., m : m + 1]) for m, row in enumerate(rows)], dim=-1
    )  # (..., M): KL(q_m ‖ p_β(m)) − log π'_β(m)
    return _entropy_term(log_pi_q) + (torch.exp(log_pi_q) * matched).sum(-1)


def matched_bound(kl: Tensor, log_pi_q: Tensor, log_pi_p: Tensor, beta: Tensor) -> Tensor:
    """B_β(q ‖ p) = Σ_m π_m [log π_m − log π'_β(m) + KL(q_m ‖ p_β(m))] (eq. 12); ≥ KL(q ‖ p).

    kl (..., M, M); log_pi_q, log_pi_p (M,) or (..., M); β (..., M) long → (...).
    Differentiable in kl (and the weights); β is held fixed.
    """
    return _matched_rows(_cost_rows(kl, log_pi_p), log_pi_q, beta)


def _greedy_bound_rows(rows: Sequence[Tensor], log_pi_q: Tensor) -> Tensor:
    """B_β with the greedy β (eq. 12, 13) on cost rows → (...), from the greedy pass's values."""
    _, values = _greedy_rows(rows, log_pi_q)  # M × (..., 1)
    pi = torch.exp(log_pi_q)
    total = functools.reduce(torch.add, [pi[..., m : m + 1] * v for m, v in enumerate(values)])
    return _entropy_term(log_pi_q) + total.squeeze(-1)


def _optimal_bound_rows(rows: Sequence[Tensor], log_pi_q: Tensor) -> Tensor:
    """min_β B_β (eq. 12) on cost rows → (...): the elementwise minimum of the permutation
    totals (its gradient is that of the minimising β); an exact assignment for larger M."""
    if len(rows) <= ENUMERATE_MAX_M:
        totals = _permutation_totals(rows, log_pi_q)  # M! × (...)
        return _entropy_term(log_pi_q) + functools.reduce(torch.minimum, totals)
    return _matched_rows(rows, log_pi_q, _optimal_rows(rows, log_pi_q))


_ROW_BOUNDS = {"greedy": _greedy_bound_rows, "optimal": _optimal_bound_rows}


def pseudo_mixture_bounds(
    mu: Tensor,
    logvar: Tensor,
    mu_p: Tensor,
    logvar_p: Tensor,
    log_pi: Tensor,
    matchings: tuple[str, ...] = ("greedy", "optimal"),
) -> dict[str, Tensor]:
    """B_βk(q(·|x_b) ‖ q(·|a_k)) for every image b and pseudo-input k at once (eq. 12, 18/22),
    for each of ``matchings`` ("greedy", eq. 13, and/or "optimal"), sharing one KL matrix.

    mu, logvar (B, M, D) of q(z|x); mu_p, logvar_p (K, M, D) of the pseudo-inputs' posteriors;
    log_pi (M,) shared by both → {matching: (B, K)}, each differentiable.
    """
    costs = _gaussian_kl_pairs_bmkn(mu, logvar, mu_p, logvar_p, -log_pi)  # (B, M, K, M)
    rows = costs.unbind(1)  # M × (B, K, M): KL(q_m ‖ p_n) − log π_n
    return {name: _ROW_BOUNDS[name](rows, log_pi) for name in matchings}


def pseudo_mixture_bound(
    mu: Tensor,
    logvar: Tensor,
    mu_p: Tensor,
    logvar_p: Tensor,
    log_pi: Tensor,
    matching: str = "greedy",
) -> Tensor:
    """B_βk(q(·|x_b) ‖ q(·|a_k)) for every image b and pseudo-input k at once (eq. 12, 18/22).

    mu, logvar (B, M, D) of q(z|x); mu_p, logvar_p (K, M, D) of the pseudo-inputs' posteriors;
    log_pi (M,) shared by both; matching "greedy" (eq. 13) or "optimal" → (B, K).
    U(x) = ``.mean(-1)`` ≥ KL(q(·|x) ‖ p) by joint convexity of KL. No loop over b or k.
    """
    return pseudo_mixture_bounds(mu, logvar, mu_p, logvar_p, log_pi, (matching,))[matching]


def lse_of_bounds(bounds: Tensor) -> Tensor:
    """U_lse = −log (1/K) Σ_k exp(−B_k) from a (..., K) matrix of per-member bounds → (...).

    Computed as log K − logsumexp_k(−B_k) (stable for large B). See `pseudo_mixture_lse_bound`.
    """
    return math.log(bounds.shape[-1]) - torch.logsumexp(-bounds, dim=-1)


def pseudo_mixture_lse_bound(
    mu: Tensor,
    logvar: Tensor,
    mu_p: Tensor,
    logvar_p: Tensor,
    log_pi: Tensor,
    matching: str = "greedy",
) -> Tensor:
    """U_lse(x) = −log (1/K) Σ_k exp(−B_βk(q(·|x) ‖ q(·|a_k))) ≥ KL(q(·|x) ‖ p): → (B,).

    Same arguments as `pseudo_mixture_bound` (q (B, M, D), pseudo-input posteriors (K, M, D),
    log_pi (M,), matching "greedy" (eq. 13) or "optimal"); ours, not in the paper.

    Derivation. Write p = Σ_k (1/K) p_k with p_k = q(·|a_k). For any weights φ on the
    simplex over k, let q̃(z, k) = φ_k q(z) and p̃(z, k) = (1/K) p_k(z); their z-marginals
    are q and p, so by the chain rule (marginalising k cannot increase a KL)
        KL(q ‖ p) ≤ KL(q̃ ‖ p̃) = Σ_k φ_k [log(K φ_k) + KL(q ‖ p_k)].
    The right-hand side is minimised by φ_k ∝ exp(−KL(q ‖ p_k)) (Gibbs), where it equals
    −log (1/K) Σ_k exp(−KL(q ‖ p_k)). This is increasing in every KL(q ‖ p_k), and
    KL(q ‖ p_k) ≤ B_βk (eq. 12, any β), hence KL(q ‖ p) ≤ −log (1/K) Σ_k exp(−B_βk) = U_lse.
    By Jensen (exp convex), −log mean_k exp(−B_βk) ≤ mean_k B_βk = U(x) (eq. 18/22), with
    equality iff all B_βk are equal — in particular for K = 1, and when the K pseudo-input
    posteriors are identical (a collapsed prior: then U is as tight as U_lse).
    Gradient: ∂U_lse/∂B_βk = softmax_k(−B_βk) (the optimal φ_k), where U gives every k 1/K:
    under U every pseudo-input is pulled toward every image's posterior; under U_lse only
    the ones responsible for it.
    """
    return lse_of_bounds(pseudo_mixture_bound(mu, logvar, mu_p, logvar_p, log_pi, matching))


def mc_kl(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    log_pi: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
) -> Tensor:
    """Monte Carlo KL integrand log q(z|x) − log p(z) at samples z ∼ q (VampPrior's estimator),
    both exact mixture log-densities. z (..., B, D); mu, logvar (B, M, D); log_pi (M,) → (..., B).
    """
    return log_mixture_diag(z, mu, logvar, log_pi) - prior_log_prob(z)
