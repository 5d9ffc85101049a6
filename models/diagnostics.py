"""Prior-collapse diagnostics of a GMMpVAE on a set of images (the validation set, every epoch).

The paper's bound U(x) = (1/K) Σ_k B_βk (eq. 18/22) pulls every pseudo-input toward every
image's posterior; trained with it, the K pseudo-input posteriors q(·|a_k) become alike (for
M = 1 one Gaussian; for M > 1 K copies of one M-component mixture — docs/RESULTS.md "What the
paper's bound does"). These numbers say whether that happened. Notation:
x_1 … x_N the images, a_1 … a_K the pseudo-inputs, q(z|·) = Σ_m π_m N(μ_m(·), σ²_m(·)),
p(z) = (1/K) Σ_k q(z|a_k), mean(·) = Σ_m π_m μ_m(·) the mean of a posterior.

- ``spread_ratio`` = s(a) / s(x), with s(a)² = (1/K) Σ_k ‖mean(a_k) − ā‖² and
  s(x)² = (1/N) Σ_n ‖mean(x_n) − x̄‖² (ā, x̄ their averages): how far apart the prior's
  members sit compared with the data's posteriors. Of order 1 for a healthy prior (measured
  0.77–0.91 on Fashion-MNIST with `mc` / `lse`, docs/RESULTS.md), ≈ 0.001 for a collapsed one.
- ``members_used`` = exp(H(r̄)) / K, r̄_k = (1/N) Σ_n r_k(z_n), r_k(z) = p(k | z) =
  q(z|a_k) / Σ_j q(z|a_j), z_n ∼ q(z|x_n) (one stratified sample per component, weighted by
  π): the effective number of prior members the data use, relative to K (1: all used evenly).
- ``resp_perplexity`` = (1/N) Σ_n exp(H(r(z_n))) / K: how many members share the
  responsibility for one image, relative to K. A collapsed prior's members are identical, so
  r(z) = 1/K everywhere and this is 1; a healthy prior gives each z to a few members (≪ 1).
- ``bound_gap`` = (1/N) Σ_n [U(x_n) − KL_MC(x_n)] and ``lse_gap`` the same for U_lse: the
  looseness of the paper's bound and of ours (KL_MC = Σ_m π_m [log q(z_m|x) − log p(z_m)] at
  the same samples; one sample per component, so each gap carries MC noise that averages out
  over the N images). A collapsed prior makes U "tight" (gap ≈ 0) — a small gap is not
  evidence of a good bound.

A trial is *collapsed* by the rule of `models.collapse_rule.is_collapsed` (re-exported here):
spread ratio < 0.05 **and** responsibility perplexity > 0.5, undecided before the warm-up ends
— the thresholds and the measured distributions behind them are in that module. Caveat: the
pseudo-inputs start as near-identical noise images (VampPrior's N(0.05, 0.01²)), so every
prior starts with a spread ratio near 0.02; an `mc` / `lse` prior spreads out over the first
epochs, a `greedy` one shrinks. The trial writes ``collapsed`` from its best epoch's
diagnostics, and the analysis re-applies the rule to the recorded columns (spread_ratio,
resp_perplexity, best_epoch, warmup_epochs), so a study written by an older rule is judged by
this one. The
standard-prior VAE has no pseudo-inputs: every diagnostic is None for it.

Cost: one encoder pass over the images and the K pseudo-inputs, a (N, M, K, M) KL matrix and
a (M, N, K·M) log-density table. Measured (benchmarks/bench_reproduce.py, CPU time, one
thread, mlp, M = 3, K = 500, 500 validation vs 5,000 training images): 0.09 s against a 2.9 s
training epoch, 3.1% (greedy) and 3.4% (mc); it scales with the validation set's size, so
with Fashion-MNIST's 10,000 / 50,000 split expect about 6%.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.collapse_rule import COLLAPSE_PERPLEXITY, COLLAPSE_SPREAD, is_collapsed
from models.distributions import log_normal_diag_pairs, sample_stratified

DIAGNOSTICS = ("spread_ratio", "members_used", "resp_perplexity", "bound_gap", "lse_gap")
BATCH = 500  # images per pass
__all__ = ["COLLAPSE_PERPLEXITY", "COLLAPSE_SPREAD", "DIAGNOSTICS", "collapse_diagnostics",
           "is_collapsed"]


def _spread(means: Tensor) -> Tensor:
    """sqrt((1/n) Σ ‖m_i − m̄‖²): (n, D) → ()."""
    return (means - means.mean(0)).square().sum(-1).mean().sqrt()


def _entropy(log_r: Tensor) -> Tensor:
    """H(r) = −Σ_k r_k log r_k over the last axis, log r normalised: (..., K) → (...)."""
    return -(torch.exp(log_r) * log_r).sum(-1)


@torch.no_grad()
def collapse_diagnostics(model: nn.Module, x: Tensor) -> dict[str, float | None]:
    """The module's diagnostics of ``model`` on images x (N, P): {name: float} (None for the
    standard prior). Uses the torch RNG for the samples z (the caller fixes its seed)."""
    if not hasattr(model.prior, "pseudo_images"):
        return dict.fromkeys(DIAGNOSTICS)
    was_training = model.training
    model.eval()
    pi, log_pi = model.pi, model.log_pi
    comps = model.prior.components()
    mu_p, lv_p = comps.mu, comps.logvar  # (K, M, D)
    k = mu_p.shape[0]
    data_means, r_sum, perplexity, gap, lse_gap = [], 0.0, 0.0, 0.0, 0.0
    for start in range(0, x.shape[0], BATCH):
        mu, logvar = model.encode(x[start : start + BATCH])  # (B, M, D)
        data_means.append((pi[:, None] * mu).sum(1))
        z = sample_stratified(mu, logvar).transpose(0, 1)  # (M, B, D)
        # log q(z|a_k) for every k: (M, B, K), a logsumexp over the members' components
        dim = z.shape[-1]
        comp = log_normal_diag_pairs(z.reshape(-1, dim), mu_p.reshape(-1, dim),
                                     lv_p.reshape(-1, dim))  # (M·B, K·M), matrix products
        comp = comp.view(*z.shape[:2], k, -1)  # (M, B, K, M)
        log_qk = torch.logsumexp(comp + log_pi, dim=-1)  # (M, B, K)
        log_r = torch.log_softmax(log_qk, dim=-1)  # p(k | z), (M, B, K)
        r_sum = r_sum + (pi[:, None, None] * torch.exp(log_r)).sum((0, 1))  # (K,)
        perplexity += float((pi[:, None] * torch.exp(_entropy(log_r))).sum())
        log_q = model.log_q(z, mu, logvar)  # (M, B)
        log_p = torch.logsumexp(log_qk, dim=-1) - math.log(k)
        kl_mc = (pi[:, None] * (log_q - log_p)).sum(0)  # (B,)
        bounds = model.prior.kl_bounds(mu, logvar, log_pi, comps, ("greedy", "lse"))
        gap += float((bounds["greedy"] - kl_mc).sum())
        lse_gap += float((bounds["lse"] - kl_mc).sum())
    model.train(was_training)
    n = x.shape[0]
    r_bar = r_sum / n
    pseudo_means = (pi[:, None] * mu_p).sum(1)  # (K, D)
    data_spread = _spread(torch.cat(data_means))
    return {
        "spread_ratio": float(_spread(pseudo_means) / data_spread),
        "members_used": float(torch.exp(_entropy(torch.log(r_bar.clamp_min(1e-300))))) / k,
        "resp_perplexity": perplexity / n / k,
        "bound_gap": gap / n,
        "lse_gap": lse_gap / n,
    }
