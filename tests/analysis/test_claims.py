"""analysis/claims.py, claims_design.py and claims_stats.py: the cases of issue 14's table fed
to the code with their right answers, the statistics against SciPy / by hand, and
version-1 studies ("no data"). The rates on simulated studies are in test_calibration.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analysis import claims
from analysis import claims_design as cd
from analysis import claims_stats as cs
from analysis.load import load
from analysis.simulate import Simulation

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from v2_study import grid, two_way_variance, write_v2_study  # noqa: E402

BASE = {("standard", 1): -250.0, ("pseudo_mixture", 1): -245.0,
        ("pseudo_mixture", 2): -243.0, ("pseudo_mixture", 3): -242.0}
SEED = {0: 0.0, 1: 0.2, 2: -0.1}


def _ll(est_bonus=None, k_bonus=0.5, order=1.0):
    def ll(s):
        base = BASE[(s["prior"], s["M"])]
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


def _sim_rows(tmp_path, sim: Simulation, i: int = 0) -> pl.DataFrame:
    return claims.prep(load([sim.write(tmp_path / f"sim{i}", i)]))


def test_paper_ordering_with_three_seeds_is_supported_and_missing_claims_say_no_data(tmp_path):
    df, v = _summary(tmp_path, grid(), _ll())
    assert v[("a", "greedy")] == "supported" and v[("b", "greedy")] == "supported"
    assert v[("d", "greedy")] == "supported"  # bound = IS LL − 3: the same ranking
    assert v[("f", "greedy")] == "contradicted"  # every greedy trial collapsed
    assert df.filter(pl.col("claim") == "c")["verdict"].to_list() == ["no data"]
    assert df.filter(pl.col("claim") == "e")["verdict"].to_list() == ["no data"]
    step = df.filter(pl.col("comparison") == "Mix2 − Mix1").row(0, named=True)
    # one difference per seed: the mean over K of 2 + 0.03·seed
    d = np.array([2.0 + 0.03 * s for s in (0, 1, 2)])
    low, high = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert step["seeds"] == 3 and step["method"].startswith("t over 3 seeds")
    assert (step["ci_low"], step["ci_high"]) == pytest.approx((low, high))
    assert step["pairs"] == "6 of 6 found" and step["missing"] == ""
    assert step["rows"].count("k") == 12  # every Mix1 and Mix2 trial named


def test_reversed_ordering_is_contradicted(tmp_path):
    _, v = _summary(tmp_path, grid(), _ll(order=-1.0))
    assert v[("a", "greedy")] == "contradicted"


def test_mix1_minus_vae_with_two_seeds_and_three_k_is_one_difference_per_seed(tmp_path):
    # issue row 1: 2 seeds × K ∈ {10, 100, 500}: not "t with 5 df", no verdict
    df, v = _summary(tmp_path, grid(seeds=(0, 1), Ks=(10, 100, 500)), _ll())
    step = df.filter(pl.col("comparison") == "Mix1 − VAE").row(0, named=True)
    assert step["seeds"] == 2 and step["verdict"] == cs.FEW_SEEDS
    assert step["method"].startswith("descriptive") and step["pairs"] == "6 of 6 found"
    # mean and range over the two seeds of mean_K Mix1 − VAE = 5 + 0.5/3 (K = 500's bonus)
    assert (step["difference"], step["ci_low"], step["ci_high"]) == pytest.approx(
        (5 + 0.5 / 3,) * 3)
    assert v[("a", "greedy")] == cs.FEW_SEEDS


def test_figure4_with_one_seed_and_a_constant_difference_is_inconclusive(tmp_path):
    # issue row 2: 1 seed, every π − uniform = −0.5 exactly: no "[−0.5, −0.5] supported"
    sim = Simulation("figure4", 1, 1, effect=lambda s: -0.5 * (max(s["pi"]) > 0.34 and
                                                                 s["pi"] not in ([0.5, 0.5],)),
                     inter_sd=0.0, block_sd=0.0, image_sd=0.0, run_image_sd=0.0)
    df = _sim_rows(tmp_path, sim)
    c = df.filter(pl.col("claim") == "c")
    assert c.height == 18 and set(c["verdict"]) == {cs.FEW_SEEDS}
    assert set(c["seeds"]) == {1} and set(c["pairs"]) == {"1 of 1 found"}
    assert c.filter(pl.col("comparison").str.contains("0.1, 0.9"))["difference"].to_list() == \
        pytest.approx([-0.5, -0.5])


def test_pi_effects_of_plus_and_minus_three_over_two_seeds_are_not_supported(tmp_path):
    # issue row 3: seed 0 gives +3, seed 1 gives −3: the old image interval said "supported"
    specs = [s for s in grid(Ms=(2,), Ks=(500,), seeds=(0, 1)) if s["prior"] != "standard"]
    specs += [{**s, "pi": [0.8, 0.2]} for s in specs]
    ll = _ll()
    df, v = _summary(tmp_path, specs, lambda s: ll(s) + ((3.0 if s["seed"] == 0 else -3.0)
                                                         if s.get("pi") else 0.0))
    row = df.filter(pl.col("claim") == "c").row(0, named=True)
    assert row["verdict"] == cs.FEW_SEEDS and v[("c", "greedy")] != cs.SUPPORTED
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-3.0, 3.0))


def test_pi_that_matters_little_with_three_seeds_is_supported_by_tost(tmp_path):
    specs = [s for s in grid(Ms=(2,), Ks=(500,)) if s["prior"] == "pseudo_mixture"]
    specs += [{**s, "pi": [0.8, 0.2]} for s in specs]
    ll = _ll()
    df, v = _summary(tmp_path, specs, lambda s: ll(s) - ((0.2 + 0.01 * s["seed"])
                                                         if s.get("pi") else 0.0))
    assert v[("c", "greedy")] == "supported"
    row = df.filter(pl.col("claim") == "c").row(0, named=True)
    d = -np.array([0.2, 0.21, 0.22])
    assert row["difference"] == pytest.approx(d.mean())
    # TOST by hand against ±0.3 nat (the default margin), with the standard error over seeds
    # and the shared test images from a loop-by-loop two-way ANOVA of the per-image values
    images = pl.read_parquet(tmp_path / "s" / "results" / "test_ll.parquet")
    trials = pl.read_parquet(tmp_path / "s" / "results" / "trials.parquet")
    table = images.join(trials.select("trial_key", "seed", "pi"), on="trial_key")
    delta = np.zeros((3, 20))
    for (_key, seed, pi), part in table.group_by("trial_key", "seed", "pi"):
        sign = 1.0 if pi[0] != pi[1] else -1.0  # π = (0.8, 0.2) − uniform
        delta[seed] += sign * part.sort("image")["log_likelihood"].to_numpy()
    var, df_sat = two_way_variance(delta)
    se = np.sqrt(var)
    assert row["se"] == pytest.approx(se) and row["df"] == pytest.approx(df_sat)
    p_eq = max(stats.t.sf((d.mean() + 0.3) / se, df_sat),
               stats.t.cdf((d.mean() - 0.3) / se, df_sat))
    assert f"p_TOST {p_eq:.3g}" in row["p"]


def test_settings_other_than_the_compared_one_are_matched(tmp_path):
    # issue row 5: 2 latent sizes × 2 K, 1 seed, cross-size pairs 3 nats apart
    specs = [s for s in grid(Ms=(1,), Ks=(100, 500), seeds=(0,)) if s["prior"] != "standard"]
    specs = [{**s, "latent_dim": d} for s in specs for d in (20, 40)]
    root = write_v2_study(tmp_path / "lat", specs, lambda s: -245.0 + 0.1 * (s["K"] == 500))
    table = pl.read_parquet(root / "results" / "trials.parquet")
    lat = [s["latent_dim"] for s in specs]
    table = table.with_columns(pl.Series("latent_dim", lat),
                               (pl.col("test_ll") + 3.0 * (pl.Series(lat) == 40)).alias("test_ll"))
    table.write_parquet(root / "results" / "trials.parquet")
    df = claims.prep(load([root]))
    b = df.filter(pl.col("claim") == "b").row(0, named=True)
    assert b["pairs"] == "2 of 2 found" and b["seeds"] == 1  # not "4 seed pairs"
    assert b["difference"] == pytest.approx(0.1) and b["verdict"] == cs.FEW_SEEDS
    # a repeated configuration is not one-to-one: one line naming the rows
    table.with_columns(pl.lit(40).alias("latent_dim")).write_parquet(
        root / "results" / "trials.parquet")
    with pytest.raises(cd.DesignError, match=r"the trials k\d+-greedy, k\d+-greedy have the "
                                             r"same settings") as err:
        claims.prep(load([root]))
    assert "\n" not in str(err.value)


def test_claim_d_leaves_the_vae_out(tmp_path):
    # issue row 6: a VAE whose exact ELBO sits far off would flip ρ; it is not a bound model
    def bound(s):
        return 100.0 if s["prior"] == "standard" else _ll()(s) - 3.0

    df, v = _summary(tmp_path, grid(), _ll(), bound=bound)
    d = df.filter(pl.col("claim") == "d").row(0, named=True)
    assert "over 6 pseudo-mixture models" in d["comparison"] and v[("d", "greedy")] == "supported"
    assert d["difference"] == pytest.approx(np.tanh(np.arctanh(0.999)))


def test_claim_a_with_one_of_its_three_steps_is_not_supported(tmp_path):
    # a Figure 4 grid has Mix2 and Mix3 only: Mix3 − Mix2 alone cannot support the chain
    sim = Simulation("figure4", 3, 1, effect=lambda s: 5.0 * (s["M"] == 3))
    df = _sim_rows(tmp_path, sim)
    rows = df.filter(pl.col("claim") == "a")
    assert set(rows["comparison"]) == {"Mix3 − Mix2"} and set(rows["verdict"]) == {"supported"}
    assert set(claims.summary(df).filter(pl.col("claim") == "a")["verdict"]) == {"inconclusive"}


def test_pruned_trials_are_named_and_drop_their_seed(tmp_path):
    sim = Simulation("reproduce", 3, 1, effect=lambda s: 2.0 * (s["prior"] != "standard"))
    sim.found[0, sim.keys.index("mlp-lse-pse-M1-K100-pi1-s1")] = False
    df = _sim_rows(tmp_path, sim)
    row = df.filter((pl.col("comparison") == "Mix1 − VAE")
                    & pl.col("scope").str.ends_with("lse")).row(0, named=True)
    assert row["pairs"] == "8 of 9 found" and row["seeds"] == 2
    assert row["missing"] == "mlp-lse-pse-M1-K100-pi1-s1 (PRUNED)"
    assert row["verdict"] == cs.FEW_SEEDS


def test_holm_against_a_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    # sorted 0.01, 0.03, 0.04, 0.2 → ×4, ×3, ×2, ×1 → 0.04, 0.09, 0.08→0.09, 0.2
    expected = np.array([0.04, 0.09, 0.09, 0.2])
    np.testing.assert_allclose(cs.holm(p, np.ones(4, bool)), expected)
    tested = np.array([True, False, True, True])
    # family of three: 0.01×3, 0.03×2, 0.2×1
    np.testing.assert_allclose(cs.holm(p, tested), [0.03, 1.0, 0.06, 0.2])


def test_family_verdicts_use_holm_for_contradicted_and_all_for_supported():
    # three comparisons, one clearly against the claim: contradicted
    d = np.array([[1.0, 1.1, 0.9], [1.0, 1.2, 0.8], [-1.0, -1.02, -0.98]])
    res = cs.one_sided_family(d, np.array([1, 1, 1]))
    assert res["code"].tolist() == [cs.CODE_SUPPORTED] * 2 + [cs.CODE_CONTRADICTED]
    assert res["claim"] == cs.CODE_CONTRADICTED
    t = d[2].mean() / stats.sem(d[2])
    assert res["p_con_holm"][2] == pytest.approx(min(1.0, 3 * stats.t.cdf(t, 2)))
    assert cs.one_sided_family(d[:2], 1)["claim"] == cs.CODE_SUPPORTED
    few = cs.one_sided_family(np.array([[1.0, 2.0, np.nan]]), 1)
    assert few["code"].tolist() == [cs.CODE_FEW] and few["claim"] == cs.CODE_FEW


def test_interval_helpers_against_scipy():
    d = np.array([1.0, 1.5, 0.7, 1.2])
    n, mean, se = cs.seed_summary(d)
    assert cs.t_interval(mean, se, n - 1) == pytest.approx(
        stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d)))
    low, high = cs.wilson(3, 10)
    res = stats.binomtest(3, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((res.low, res.high))
    x, y = np.random.default_rng(1).normal(size=(2, 4, 9))
    np.testing.assert_allclose(cs.spearman_rows(x, y),
                               [stats.spearmanr(a, b).statistic
                                for a, b in zip(x, y, strict=True)])
    assert claims.claim_verdict(["supported", "no data"]) == "inconclusive"
    assert claims.claim_verdict(["supported", "contradicted"]) == "contradicted"
    assert np.isnan(cs.wilson(0, 0)[0])


def test_version_1_study_gives_verdicts_without_collapse_data(frames):
    df = claims.prep(frames)
    assert set(df["claim"]) >= set(claims.STATEMENTS)
    assert df.filter(pl.col("claim") == "f")["verdict"].to_list() == ["no data"]
    assert claims.notes(df)[0].startswith("Method (docs/VERDICTS.md): the unit is a training "
                                          "run")


def test_the_margin_comes_from_the_study_file_via_study_json(tmp_path):
    import json

    from analysis.load import ResultsError

    specs = [s for s in grid(Ms=(2,), Ks=(500,)) if s["prior"] == "pseudo_mixture"]
    specs += [{**s, "pi": [0.8, 0.2]} for s in specs]
    ll = _ll()
    root = write_v2_study(tmp_path / "m", specs, lambda s: ll(s) - ((0.5 + 0.01 * s["seed"])
                                                                   if s.get("pi") else 0.0))
    (root / "study.json").write_text(json.dumps({"spec": {"claims": {"pi_margin": 0.1}}}))
    df = claims.prep(load([root]))
    row = df.filter(pl.col("claim") == "c").row(0, named=True)
    assert "margin ±0.1 nat" in row["method"] and row["verdict"] == "contradicted"
    assert "< 0.1 nat" in row["statement"]
    (root / "study.json").write_text(json.dumps({"spec": {"claims": {"pi_margin": "x"}}}))
    with pytest.raises(ResultsError, match="claims.pi_margin='x' is invalid"):
        load([root])


def test_collapse_is_judged_by_the_rule_on_recorded_columns_not_the_stored_flag(tmp_path):
    sim = Simulation("figure4", 3, 1, collapse_p=1.0)  # every prior collapsed
    root = sim.write(tmp_path / "f", 0)
    table = pl.read_parquet(root / "results" / "trials.parquet")
    early = table["trial_key"][0]
    table = table.with_columns(
        pl.lit(False).alias("collapsed"),  # an older rule's stored flag: ignored
        pl.when(pl.col("trial_key") == early).then(2).otherwise(pl.col("best_epoch"))
        .alias("best_epoch"))  # best epoch 2 < warm-up 4: undecided
    table.write_parquet(root / "results" / "trials.parquet")
    f = claims.prep(load([root])).filter(pl.col("claim") == "f")
    greedy = f.filter(pl.col("scope").str.ends_with("greedy")).row(0, named=True)
    assert greedy["comparison"].startswith("32 of 32 collapsed")
    assert "1 undecided (best epoch before the warm-up ended)" in greedy["comparison"]
    assert set(f["verdict"]) == {"contradicted"}
