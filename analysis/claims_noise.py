"""The noise of a comparison as the study itself measured it, and the power that noise leaves.

A comparison A − B (`analysis.claims_design`) has, per seed s and shared test image i, the
paired difference δ_si = mean over the seed's pairs of ll_A(i) − ll_B(i) (``test_ll.parquet``
holds every trial's per-image IS LL; all trials of a study are scored on the same images). Read
as a two-way layout seeds × images,

    δ_si = μ + a_s + b_i + e_si,

a_s is the **seed × setting interaction** (how much this seed's training run favours A more
than another seed's does: the error term of a paired difference), b_i the **test-image** effect
(images on which A beats B in every seed: shared by all seeds, so averaging over seeds does not
remove it) and e_si the per-run, per-image residual (which holds the **IS noise** of both
trials: it is not recorded apart, so it is reported inside the residual). With n seeds and N
images the mean squares MS_seed = N·var_s(d_s), MS_image = n·var_i(δ̄_i) and the residual MS_res
give the variance of the mean difference over seeds *and* test images

    var(d̄) = σ_a²/n + σ_b²/N + σ_e²/(nN) = (MS_seed + MS_image − MS_res) / (nN)

(each E[MS] by the balanced random-effects ANOVA): the t over seeds alone (s_d²/n = MS_seed/(nN))
plus the test-image part (MS_image − MS_res)/(nN), truncated at 0, with Satterthwaite's degrees
of freedom. A comparison whose trials lack per-image values has the t over seeds only (its
``image_sd`` is NaN).

Power (`power_gain`, `power_equivalence`) is computed for n seeds at a seed-level sd s (the sd
over seeds of d_s, which holds σ_a and σ_e/√N) and the test-image part v (fixed: more seeds
do not shrink it), se(n) = √(s²/n + v), the seed part estimated with n − 1 df and the test's
critical t at its Satterthwaite df, as the verdict computes them; `seeds_needed` is the
smallest n ≥ 3 reaching 80%.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from analysis import claims_stats as cs

TARGET_POWER = 0.80
MOST_SEEDS = 100  # seeds_needed gives up beyond this (reported as "> 100")


def image_differences(pairs_a: np.ndarray, pairs_b: np.ndarray, seed_of: np.ndarray,
                      n_seeds: int, images: np.ndarray, found: np.ndarray) -> np.ndarray:
    """δ (..., n_seeds, N): per seed, the mean over its pairs (rows ``pairs_a`` − ``pairs_b``,
    seed index ``seed_of``) of the per-image difference; NaN for a seed with a pair not found.
    ``images`` (..., rows, N), ``found`` (..., rows)."""
    diff = images[..., pairs_a, :] - images[..., pairs_b, :]  # (..., pairs, N)
    ok = found[..., pairs_a] & found[..., pairs_b]
    out = np.full((*diff.shape[:-2], n_seeds, diff.shape[-1]), np.nan)
    for s in range(n_seeds):
        cols = seed_of == s
        mean = diff[..., cols, :].mean(-2)
        out[..., s, :] = np.where(ok[..., cols].all(-1)[..., None], mean, np.nan)
    return out


def components(delta: np.ndarray) -> dict[str, np.ndarray]:
    """The variance components of `image_differences`' δ (..., seeds, N) (module docstring):
    n, N, ms_seed, ms_image, ms_res, var_seed (s_d²/n), var_image ((MS_image − MS_res)/(nN),
    ≥ 0), df (Satterthwaite), image_sd (the sd over images of a seed's paired difference,
    averaged over seeds in variance) and effect_sd (√((MS_image − MS_res)/n): the sd of the
    test-image effect b_i)."""
    ok = np.isfinite(delta).all(-1)  # (..., seeds)
    n = ok.sum(-1)
    big_n = delta.shape[-1]
    d = np.where(ok[..., None], delta, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_s = d.mean(-1)  # (..., seeds)
        grand = d_s.sum(-1) / n
        d_i = d.sum(-2) / n[..., None]  # (..., N)
        ms_seed = big_n * (np.where(ok, d_s - grand[..., None], 0.0) ** 2).sum(-1) / (n - 1)
        ms_image = n * ((d_i - grand[..., None]) ** 2).sum(-1) / (big_n - 1)
        res = d - d_s[..., None] - d_i[..., None, :] + grand[..., None, None]
        ms_res = (np.where(ok[..., None], res, 0.0) ** 2).sum((-1, -2)) / ((n - 1) * (big_n - 1))
        within = (np.where(ok[..., None], d - d_s[..., None], 0.0) ** 2).sum((-1, -2))
        image_sd = np.sqrt(within / (n * (big_n - 1)))
        nn = n * big_n
        var_seed = ms_seed / nn
        image_part = np.maximum(ms_image - ms_res, 0.0)
        var_image = image_part / nn
        terms = ((ms_seed / nn) ** 2 / (n - 1) + (ms_image / nn) ** 2 / (big_n - 1)
                 + (ms_res / nn) ** 2 / ((n - 1) * (big_n - 1)))
        df = np.where(image_part > 0, (var_seed + var_image) ** 2 / terms, n - 1.0)
    valid = (n >= 2) & (big_n >= 2)
    nan = np.nan
    out = {"ms_seed": ms_seed, "ms_image": ms_image, "ms_res": ms_res, "var_seed": var_seed,
           "var_image": var_image, "df": np.maximum(df, 1.0), "image_sd": image_sd,
           "effect_sd": np.sqrt(image_part / np.maximum(n, 1))}
    return {"n": n, "N": np.full(n.shape, big_n),
            **{k: np.where(valid, v, nan) for k, v in out.items()}}


def _quantiles(n: np.ndarray, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """df = n − 1 and ``nodes`` equal-probability quantiles of χ²_df / df (..., nodes)."""
    df = np.asarray(n, dtype=float)[..., None] - 1
    return df, stats.chi2.ppf((np.arange(nodes) + 0.5) / nodes, df) / df


def _estimated_se(sd_seed, var_image, n, ratio) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true se, the estimated ŝe at χ²/df = ``ratio`` (the seed part estimated from n − 1
    df, the test-image part taken as known: its df are in the hundreds) and the test's
    Satterthwaite df at that ŝe (as `components` computes it, with the image part's df
    infinite)."""
    seed_var = np.asarray(sd_seed, float) ** 2 / np.asarray(n, dtype=float)[..., None]
    image = np.nan_to_num(np.asarray(var_image, float))
    df = np.asarray(n, dtype=float)[..., None] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        sat = (seed_var * ratio + image) ** 2 / ((seed_var * ratio) ** 2 / df)
    return np.sqrt(seed_var + image), np.sqrt(seed_var * ratio + image), np.maximum(sat, df)


def power_gain(effect, sd_seed, var_image, n, nodes: int = 400) -> np.ndarray:
    """The chance that a one-sided comparison (supported when its 95% interval lies above 0:
    mean > t_{0.975, n−1}·ŝe) is supported when the true gain is ``effect`` > 0, with n seeds
    at seed-level sd ``sd_seed`` and test-image variance ``var_image``: the mean is
    N(effect, se²), independent of the seed variance's χ²_{n−1}, so the power is the average
    over χ² of Φ((effect − t·ŝe)/se), over ``nodes`` equal-probability quantiles."""
    _, ratio = _quantiles(n, nodes)
    se, se_hat, df = _estimated_se(sd_seed, var_image, n, ratio)
    t = stats.t.ppf(1 - cs.ALPHA / 2, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        return stats.norm.cdf((np.asarray(effect, float) - t * se_hat) / se).mean(-1)


def power_equivalence(margin, sd_seed, var_image, n, nodes: int = 400) -> np.ndarray:
    """The chance that the TOST (90% interval inside ±``margin``) supports equivalence when the
    true difference is 0: it passes when |mean| < margin − t_{0.95, n−1}·ŝe, so the power is
    the average over χ² of max(0, 2Φ((margin − t·ŝe)/se) − 1) (as `power_gain`; the common
    shortcut 1 − 2·P(T' ≤ t) by the noncentral t is far off at 2 df: 0.53 against a
    Monte Carlo 0.63)."""
    _, ratio = _quantiles(n, nodes)
    se, se_hat, df = _estimated_se(sd_seed, var_image, n, ratio)
    t = stats.t.ppf(1 - cs.ALPHA, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = (np.asarray(margin, float) - t * se_hat) / se
    return np.maximum(0.0, 2 * stats.norm.cdf(half) - 1).mean(-1)


def seeds_needed(power, size: float, sd_seed: float, var_image: float) -> int | None:
    """The smallest n in 3 … `MOST_SEEDS` with ``power(size, sd_seed, var_image, n)`` ≥ 80%;
    None when no n up to `MOST_SEEDS` reaches it (or the noise is unknown)."""
    if not (math.isfinite(size) and math.isfinite(sd_seed)):
        return None
    n = np.arange(cs.MIN_SEEDS, MOST_SEEDS + 1)
    reached = np.nonzero(power(size, sd_seed, var_image, n) >= TARGET_POWER)[0]
    return int(n[reached[0]]) if reached.size else None
