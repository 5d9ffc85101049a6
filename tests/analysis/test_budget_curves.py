"""analysis/budget_curves.py: each model's test IS LL per budget against the values the
hand-made studies were written with (SciPy for the intervals), the published converged
numbers it is put beside, and a study holding one budget."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analysis import budget_curves as bc
from analysis.load import load

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from budget_study import write_budget_study  # noqa: E402
from v2_study import grid  # noqa: E402

SEED = {0: 0.0, 1: 0.4, 2: -0.1}


def ll(s: dict, budget: int) -> float:
    base = -258.0 if s["prior"] == "standard" else -254.0 + 0.3 * s["M"]
    return base + 0.25 * budget + SEED[s["seed"]] * (1 + 0.1 * budget)


def elbo(s: dict, e: int) -> float:
    return -300.0 + e


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    specs = grid(estimators=("greedy", "mc"), Ms=(1, 2), Ks=(100, 500))
    root = write_budget_study(tmp_path_factory.mktemp("bc") / "s", specs, elbo, ll,
                              budgets=(4, 8))
    return specs, bc.prep(load([root]))


def test_mean_and_t_interval_over_seeds_per_model_and_budget(curves):
    specs, df = curves
    assert df.height == 2 * 2 * (1 + 2 * 2)  # budgets × estimators × (VAE + M × K)
    for r in df.iter_rows(named=True):
        values = np.array([ll(s, r["max_epochs"]) for s in specs
                           if s["kl_estimator"] == r["kl_estimator"] and s["prior"] == r["prior"]
                           and s["M"] == r["M"] and (r["K"] is None or s["K"] == r["K"])])
        assert len(values) == r["seeds"] == 3
        low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
        assert r["mean"] == pytest.approx(values.mean())
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
        assert r["interval"] == "95% t" and r["epochs_run_max"] == r["max_epochs"]


def test_published_converged_numbers_where_the_model_is_the_published_one(curves):
    _, df = curves
    vae = df.filter(pl.col("prior") == "standard")
    assert vae["published"].to_list() == [-228.70] * 4  # Fashion-MNIST, mlp: Exemplar VAE's
    assert vae["gap"].to_list() == pytest.approx((vae["mean"] + 228.70).to_list())
    vamp = df.filter((pl.col("M") == 1) & (pl.col("prior") == "pseudo_mixture")
                     & (pl.col("kl_estimator") == "mc"))
    assert vamp.filter(pl.col("K") == 500)["published"].to_list() == [-227.35] * 2
    assert vamp.filter(pl.col("K") == 100)["published"].null_count() == 2  # published at 500
    # Mix1 trained with the paper's bound is not VampPrior; Mix2 has no Fashion-MNIST number
    others = df.filter((pl.col("prior") == "pseudo_mixture")
                       & ((pl.col("kl_estimator") == "greedy") | (pl.col("M") == 2)))
    assert others["published"].null_count() == others.height
    lines = bc.reference_lines(df)
    assert lines.height == 2 * 2  # VAE and VampPrior in each estimator's panel
    assert sorted(set(zip(lines["name"], lines["value"], strict=True))) == [
        ("VAE", -228.70), ("VampPrior K=500", -227.35)]


def test_published_name_follows_how_the_source_trained_it():
    assert bc.published_name("standard", 1, "lse") == "VAE"
    assert bc.published_name("pseudo_mixture", 1, "mc") == "VampPrior"
    assert bc.published_name("pseudo_mixture", 2, "greedy") == "Mix2"
    assert bc.published_name("pseudo_mixture", 2, "lse") is None


def test_a_study_with_one_budget_says_so_and_draws_no_figure(tmp_path):
    specs = grid(seeds=(0, 1))
    root = write_budget_study(tmp_path / "s", specs, elbo, ll, budgets=(6,), dataset="digits")
    df = bc.prep(load([root]))
    notes = bc.notes(df)
    assert len(notes) == 1 and notes[0].startswith("This study holds one budget (max 6 epochs)")
    paths = bc.render(df, tmp_path / "out")
    assert not (tmp_path / "out" / "figures").exists()
    assert {p.name for p in paths} == {"budget_curves.csv", "budget_curves.md",
                                       "budget_curves.html"}
    # two seeds: the range, as the claims section shows it; digits: nothing published
    r = df.filter(pl.col("prior") == "standard").row(0, named=True)
    assert r["interval"] == "range" and (r["ci_low"], r["ci_high"]) == pytest.approx(
        sorted(ll(s, 6) for s in specs if s["prior"] == "standard"))
    assert df["published"].null_count() == df.height and bc.reference_lines(df).is_empty()
