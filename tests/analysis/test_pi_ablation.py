"""π as a continuous ablation: the summary of π, the fit and its band against independent
computations, and the answer to claim (c)'s question."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analysis import claims_stats as cs
from analysis import pi_ablation
from analysis.load import DEFAULT_PI_MARGIN


def test_relative_entropy_is_scipys_entropy_over_log_m():
    rng = np.random.default_rng(0)
    for m in (2, 3, 5):
        for pi in rng.dirichlet(np.ones(m), 20):
            assert pi_ablation.relative_entropy(list(pi)) == pytest.approx(
                stats.entropy(pi) / math.log(m))
    assert pi_ablation.relative_entropy([0.5, 0.5]) == pytest.approx(1.0)
    assert pi_ablation.relative_entropy([1.0]) == 1.0


def test_line_band_is_the_textbook_simple_regression_interval():
    """Degree 1: ŷ ± t s √(1/n + (x0 − x̄)² / Sxx)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 12)
    y = 2.0 - 3.0 * x + rng.normal(0, 0.5, 12)
    at = np.linspace(0, 1, 7)
    mean, low, high = pi_ablation.fit(x, y, at, 1)
    line = stats.linregress(x, y)
    n = len(x)
    s = math.sqrt(((y - line.intercept - line.slope * x) ** 2).sum() / (n - 2))
    half = stats.t.ppf(0.975, n - 2) * s * np.sqrt(
        1 / n + (at - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
    assert mean == pytest.approx(line.intercept + line.slope * at)
    assert low == pytest.approx(mean - half) and high == pytest.approx(mean + half)


def test_quadratic_band_uses_polyfits_unscaled_covariance():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, 15)
    y = 1.0 + x - 2 * x**2 + rng.normal(0, 0.2, 15)
    at = np.array([0.1, 0.5, 0.9])
    mean, low, high = pi_ablation.fit(x, y, at, 2)
    coef, cov = np.polyfit(x, y, 2, cov="unscaled")
    s2 = ((y - np.polyval(coef, x)) ** 2).sum() / (len(x) - 3)
    grid = np.vander(at, 3)
    se = np.sqrt(s2 * np.einsum("ij,jk,ik->i", grid, cov, grid))
    assert mean == pytest.approx(np.polyval(coef, at))
    assert high - mean == pytest.approx(stats.t.ppf(0.975, len(x) - 3) * se)


def test_band_covers_the_true_line_at_its_level():
    """Monte Carlo: the pointwise 95% band covers the true mean ≈ 95% of the time (± 3 se)."""
    rng = np.random.default_rng(3)
    x = np.linspace(0, 1, 10)
    hits, runs = 0, 2000
    for _ in range(runs):
        y = 1.0 + 2.0 * x + rng.normal(0, 1, x.size)
        _, low, high = pi_ablation.fit(x, y, np.array([0.3]), 1)
        hits += int(low[0] <= 1.6 <= high[0])
    assert abs(hits / runs - 0.95) < 3 * math.sqrt(0.95 * 0.05 / runs)


def test_span_is_the_fitted_range_over_the_observed_x():
    x = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    y = 3.0 * x
    assert pi_ablation.span(x, y, 1) == pytest.approx(2.4)
    assert pi_ablation.degree(2) is None and pi_ablation.degree(3) == 1
    assert pi_ablation.degree(pi_ablation.QUADRATIC_FROM) == 2
    low, high = pi_ablation.span_interval(x, y + 0.0, 1, n_boot=50)
    assert low == pytest.approx(2.4) and high == pytest.approx(2.4)  # no noise: every refit


def test_answer_is_a_description_without_replicates_and_a_verdict_with_them():
    text = pi_ablation.answer(0.4, 0.1, 0.7, 1.0, 12, [])
    assert text.startswith("description, not a verdict")
    assert "below the margin of 1 nat over its whole interval" in text
    assert "above the margin" in pi_ablation.answer(3.0, 1.5, 4.0, 1.0, 12, [])
    assert "straddles" in pi_ablation.answer(1.2, 0.5, 2.0, 1.0, 12, [])
    few = pi_ablation.answer(0.4, 0.1, 0.7, 1.0, 12, [cs.FEW_SEEDS])
    assert few.startswith("description")  # fewer than 3 seeds: still no verdict
    verdict = pi_ablation.answer(0.4, 0.1, 0.7, 1.0, 12, [cs.SUPPORTED, cs.SUPPORTED])
    assert verdict.startswith("verdict") and cs.SUPPORTED in verdict
    assert "no fit" in pi_ablation.answer(math.nan, math.nan, math.nan, 1.0, 2, [])


def test_prep_and_summary_on_the_fixture_study(frames):
    """Study alpha: M = 2 and M = 3 trials at two π each, two seeds: the claims section has
    claim (c) comparisons with fewer than 3 seeds, so the answer is a description."""
    df = pi_ablation.prep(frames)
    assert set(df["M"]) == {2, 3} and (df["entropy"] <= 1.0 + 1e-12).all()
    done = frames.trials.filter((pl.col("state") == "COMPLETED") & (pl.col("M") >= 2)
                                & (pl.col("prior") == "pseudo_mixture"))
    assert df.height == done.height
    summary = pi_ablation.summarise(df)
    assert summary["M"].to_list() == [2, 3]
    # the study sets no margin: the claims' default
    for row in summary.iter_rows(named=True):
        assert row["answer"].startswith("description") and row["margin"] == DEFAULT_PI_MARGIN
        part = df.filter(pl.col("M") == row["M"])
        x, y = part["entropy"].to_numpy(), part["test_ll"].to_numpy()
        assert row["span"] == pytest.approx(pi_ablation.span(x, y, 1))
