"""analysis/claims.py and claims_stats.py: verdicts on hand-made studies whose answer is known,
the interval methods against SciPy / by hand, and version-1 studies ("no data")."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analysis import claims
from analysis import claims_stats as cs
from analysis.load import load

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from v2_study import grid, write_v2_study  # noqa: E402

BASE = {("standard", 1): -250.0, ("pseudo_mixture", 1): -245.0,
        ("pseudo_mixture", 2): -243.0, ("pseudo_mixture", 3): -242.0}
SEED = {0: 0.0, 1: 0.2, 2: -0.1}


def _ll(est_bonus=None, k_bonus=0.5, order=1.0):
    def ll(s):
        base = BASE[(s["prior"], s["M"])] * (1 if order > 0 else 1)
        if order < 0 and s["prior"] == "pseudo_mixture":
            base = -245.0 - 2.0 * (s["M"] - 1)  # more components, worse
        value = base + SEED[s["seed"]] + (k_bonus if s.get("K") == 500 else 0.0)
        value += 0.03 * s["seed"] * s["M"]  # pairs do not differ by a constant
        return value + (est_bonus or {}).get(s["kl_estimator"], 0.0)
    return ll


def _summary(tmp_path, specs, ll, name="s", **kw):
    frames = load([write_v2_study(tmp_path / name, specs, ll, **kw)])
    df = claims.prep(frames)
    verdicts = {(r["claim"], r["scope"].split(" · ")[-1]): r["verdict"]
                for r in claims.summary(df).iter_rows(named=True)}
    return df, verdicts


def test_paper_ordering_with_three_seeds_is_supported_and_missing_claims_say_no_data(tmp_path):
    df, v = _summary(tmp_path, grid(), _ll())
    assert v[("a", "greedy")] == "supported" and v[("b", "greedy")] == "supported"
    assert v[("d", "greedy")] == "supported"  # bound = IS LL − 3: the same ranking
    assert v[("f", "greedy")] == "contradicted"  # every greedy trial collapsed
    assert df.filter(pl.col("claim") == "c")["verdict"].to_list() == ["no data"]
    assert df.filter(pl.col("claim") == "e")["verdict"].to_list() == ["no data"]
    step = df.filter(pl.col("comparison") == "Mix2 − Mix1").row(0, named=True)
    assert step["pairs"] == 6 and step["method"] == "t over 6 seed pairs"
    # the t interval by hand: pairs (K, seed), differences 2 + 0.03·seed
    d = np.array([2.0 + 0.03 * s for _ in (100, 500) for s in (0, 1, 2)])
    low, high = stats.t.interval(0.95, 5, loc=d.mean(), scale=stats.sem(d))
    assert (step["ci_low"], step["ci_high"]) == pytest.approx((low, high))
    assert step["rows"].count("k0") == 12  # every Mix1 and Mix2 trial named


def test_reversed_ordering_is_contradicted(tmp_path):
    _, v = _summary(tmp_path, grid(), _ll(order=-1.0))
    assert v[("a", "greedy")] == "contradicted"


def test_two_seeds_use_the_image_interval_and_need_every_pair_to_agree(tmp_path):
    df, v = _summary(tmp_path, grid(seeds=(0, 1), Ks=(500,)), _ll())
    step = df.filter(pl.col("comparison") == "Mix3 − Mix2").row(0, named=True)
    assert step["pairs"] == 2 and step["method"].startswith("z over 20 test images")
    assert v[("a", "greedy")] == "supported"
    # no K = 100: claim b has no pairs
    assert df.filter(pl.col("claim") == "b")["pairs"].to_list() == [0]


def test_better_alternatives_contradict_claim_e_and_lse_mc_is_named(tmp_path):
    specs = grid(estimators=("greedy", "lse", "mc"), collapsed=("greedy",))
    df, v = _summary(tmp_path, specs, _ll(est_bonus={"lse": 2.0, "mc": 1.5}))
    assert v[("e", "mlp")] == "contradicted"
    assert v[("f", "greedy")] == "contradicted" and v[("f", "lse")] == "supported"
    assert v[("f", "mc")] == "supported"
    row = df.filter(pl.col("comparison").str.starts_with("lse − mc")).row(0, named=True)
    assert row["verdict"] == "lse better" and row["difference"] == pytest.approx(0.5)


def test_pi_that_matters_little_is_supported(tmp_path):
    specs = [s for s in grid(Ms=(2,), Ks=(500,)) if s["prior"] == "pseudo_mixture"]
    specs += [{**s, "pi": [0.8, 0.2]} for s in specs]
    ll = _ll()
    df, v = _summary(tmp_path, specs, lambda s: ll(s) - (0.2 if s.get("pi") else 0.0))
    assert v[("c", "greedy")] == "supported"
    row = df.filter(pl.col("claim") == "c").row(0, named=True)
    assert row["difference"] == pytest.approx(-0.2)


def test_interval_helpers_against_scipy():
    d = np.array([1.0, 1.5, 0.7, 1.2])
    assert cs.seed_interval(d) == pytest.approx(
        stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d)))
    low, high = cs.wilson(3, 10)
    res = stats.binomtest(3, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((res.low, res.high))
    rho, lo, hi = cs.spearman_interval(np.arange(10.0), np.arange(10.0) ** 2)
    assert rho == pytest.approx(1.0) and lo > 0.9
    assert cs.combine(["supported", "no data"]) == "inconclusive"
    assert cs.combine(["supported", "contradicted"]) == "contradicted"
    assert cs.equivalence(cs.Interval(2, 0.0, -0.5, 0.5, "t x", ()), 1.0) == "supported"
    assert math.isnan(cs.wilson(0, 0)[0])


def test_version_1_study_gives_verdicts_without_collapse_data(frames):
    df = claims.prep(frames)
    assert set(df["claim"]) == set(claims.STATEMENTS)
    assert df.filter(pl.col("claim") == "f")["verdict"].to_list() == ["no data"]
    assert claims.notes(df)[0].startswith("Interval method")
