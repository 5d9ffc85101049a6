"""Issue 22's verdicts: the noise components against a loop-by-loop ANOVA and Monte Carlo, the
power against Monte Carlo, the published effects against the tables by hand, one verdict per
budget, claim (g)'s pairs, claim (d) led by the paper's objective, the collapse rule's "not yet
spread", claim (f) clustered by seed, the minimum-effect test, and the study's smallest effect
of interest. The false-verdict rates on simulated studies are in test_calibration.py."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analysis import claims
from analysis import claims_noise as cn
from analysis import claims_paper as cp
from analysis import claims_stats as cs
from analysis.load import load
from analysis.simulate import Simulation
from models.collapse_rule import COLLAPSED, HEALTHY, NOT_YET_SPREAD, collapse_state

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from v2_study import grid, two_way_variance, write_v2_study  # noqa: E402

RNG = np.random.default_rng(22)


def test_components_equal_the_loop_by_loop_anova():
    for image_sd in (0.0, 2.0):  # the image part truncated at 0, and present
        delta = (RNG.normal(0, 0.4, (3, 1)) + RNG.normal(0, image_sd, (1, 40))
                 + RNG.normal(0, 1.0, (3, 40)))
        c = cn.components(delta)
        var, df = two_way_variance(delta)
        assert c["var_seed"] + c["var_image"] == pytest.approx(var)
        assert c["df"] == pytest.approx(df)
        assert c["var_seed"] == pytest.approx(np.var(delta.mean(1), ddof=1) / 3)


def test_components_estimate_the_variance_of_the_mean_over_seeds_and_images():
    # δ_si = a_s + b_i + e_si: var(grand mean) = σa²/n + σb²/N + σe²/(nN); the untruncated
    # estimate (MS_seed + MS_image − MS_res)/(nN) is unbiased for it (Monte Carlo, 3 SE)
    n, big_n, sa, sb, se = 3, 50, 0.3, 1.5, 3.0
    reps = 20000
    delta = (RNG.normal(0, sa, (reps, n, 1)) + RNG.normal(0, sb, (reps, 1, big_n))
             + RNG.normal(0, se, (reps, n, big_n)))
    c = cn.components(delta)
    estimate = (c["ms_seed"] + c["ms_image"] - c["ms_res"]) / (n * big_n)
    truth = sa**2 / n + sb**2 / big_n + se**2 / (n * big_n)
    assert abs(estimate.mean() - truth) < 3 * estimate.std() / math.sqrt(reps)
    assert np.var(delta.mean((1, 2))) == pytest.approx(truth, rel=0.05)


def _simulated_power(effect, sd, var_image, n, equivalence=False, reps=200_000):
    """The verdict's own procedure on simulated seed differences (the image part known)."""
    d = RNG.normal(effect, sd, (reps, n))
    mean = d.mean(1) + RNG.normal(0, math.sqrt(var_image), reps)
    seed_var = d.var(1, ddof=1) / n
    se = np.sqrt(seed_var + var_image)
    df = np.maximum((seed_var + var_image) ** 2 / (seed_var**2 / (n - 1)), n - 1)
    if equivalence:
        t = stats.t.ppf(0.95, df)
        return float(((mean + 1.0) / se > t).__and__((mean - 1.0) / se < -t).mean())
    return float((mean / se > stats.t.ppf(0.975, df)).mean())


@pytest.mark.parametrize("n", [3, 5])
def test_power_functions_against_monte_carlo(n):
    sd, var_image = 0.45, 0.004
    for effect in (0.3, 0.8):
        sim = _simulated_power(effect, sd, var_image, n)
        assert float(cn.power_gain(effect, sd, var_image, n)) == pytest.approx(sim, abs=0.006)
    sim = _simulated_power(0.0, sd, var_image, n, equivalence=True)
    assert float(cn.power_equivalence(1.0, sd, var_image, n)) == pytest.approx(sim, abs=0.006)


def test_seeds_needed_is_the_first_n_reaching_80_percent():
    needed = cn.seeds_needed(cn.power_gain, 0.3, 0.45, 0.004)
    assert cn.power_gain(0.3, 0.45, 0.004, needed) >= 0.8 > cn.power_gain(0.3, 0.45, 0.004,
                                                                          needed - 1)
    # a test-image variance that alone leaves the gain undetectable: never
    assert cn.seeds_needed(cn.power_gain, 0.3, 0.45, 0.05) is None


def test_published_effects_by_hand():
    # the paper's Table 1 (MNIST, mlp): Mix2 − Mix1 at K = 100, 500: 7.27 and 7.08 → 7.08
    assert cp.paper_effect("a", "Mix2 − Mix1", "mnist", "mlp", "greedy", [10, 100, 500],
                           [2])[0] == pytest.approx(-78.24 + 85.32)
    # K 100 → 500 for M = 1, 2, 3: 0.58, 0.39, 0.86 → the smallest
    assert cp.paper_effect("b", "K=500 − K=100", "mnist", "mlp", "greedy", [100, 500],
                           [1, 2, 3])[0] == pytest.approx(-78.24 + 78.63)
    # Fashion-MNIST: only VampPrior − VAE is published (Exemplar VAE's table), for `mc`
    value, source = cp.paper_effect("a", "Mix1 − VAE", "fashion_mnist", "mlp", "mc",
                                    [10, 100, 500], [1])
    assert value == pytest.approx(-227.35 + 228.70) and "Exemplar VAE" in source
    for est in ("greedy", "lse"):
        assert cp.paper_effect("a", "Mix1 − VAE", "fashion_mnist", "mlp", est, [500],
                               [1]) == (None, cp.NOT_REPORTED)
    # claim g: GMMpVAE Mix2 (K = 500) against VampPrior as the paper cites it
    assert cp.paper_effect("g", "Mix2 (greedy) − VampPrior (Mix1, mc)", "mnist", "mlp", None,
                           [10, 100, 500], [2])[0] == pytest.approx(-78.24 + 82.38)
    assert cp.paper_effect("g", "Mix2 (greedy) − VampPrior (Mix1, mc)", "fashion_mnist",
                           "mlp", None, [500], [2]) == (None, cp.NOT_REPORTED)


def test_minimum_effect_verdicts_and_their_p_values():
    d = np.array([[0.10, 0.12, 0.08],   # far below the reference 1: excluded
                  [1.50, 1.40, 1.60],   # above it and above 0: consistent
                  [0.50, -0.40, 1.80]])  # wide: inconclusive
    res = cs.one_sided_family(d, np.array([1, 1, 1]), reference=np.ones(3))
    assert res["min_code"].tolist() == [cs.MIN_EXCLUDED, cs.MIN_CONSISTENT,
                                        cs.MIN_INCONCLUSIVE]
    t = (1.0 - d[0].mean()) / stats.sem(d[0])
    raw = [stats.t.sf((1.0 - x.mean()) / stats.sem(x), 2) for x in d]
    assert res["p_excluded_holm"][0] == pytest.approx(min(1.0, 3 * stats.t.sf(t, 2)))
    assert res["p_excluded_holm"] == pytest.approx(cs.holm(np.array(raw), np.ones(3, bool)))


def _two_budget_study(tmp_path: Path) -> Path:
    specs = grid()
    specs = [{**s, "budget": b} for b in (4, 40) for s in specs]

    def ll(s):
        base = {("standard", 1): -250.0, ("pseudo_mixture", 1): -245.0,
                ("pseudo_mixture", 2): -243.0, ("pseudo_mixture", 3): -242.0}
        gain = 1.0 if s["budget"] == 40 else -1.0  # the order flips with the budget
        step = (s["M"] - 1) * gain if s["prior"] == "pseudo_mixture" else 0.0
        return base[(s["prior"], 1)] + step + 0.05 * s["seed"] * s["M"]

    root = write_v2_study(tmp_path / "budgets", specs, ll)
    table = pl.read_parquet(root / "results" / "trials.parquet")
    table = table.with_columns(pl.Series("max_epochs", [s["budget"] for s in specs]),
                               pl.Series("epochs_run", [s["budget"] for s in specs]))
    table.write_parquet(root / "results" / "trials.parquet")
    return root


def test_a_study_with_two_budgets_gets_one_verdict_per_budget(tmp_path):
    df = claims.prep(load([_two_budget_study(tmp_path)]))
    steps = df.filter(pl.col("comparison") == "Mix2 − Mix1")
    assert steps.height == 2 and set(steps["pairs"]) == {"6 of 6 found"}  # never pooled
    by_budget = {r["budget"]: r for r in steps.iter_rows(named=True)}
    short = by_budget["max 4 epochs, all train images, warm-up 1, IS all, all test images, "
                      "early training"]
    long = by_budget["max 40 epochs, all train images, warm-up 1, IS all, all test images, "
                     "early training"]
    assert short["difference"] < 0 < long["difference"] and long["epochs_run"] == "40"
    summary = claims.summary(df).filter(pl.col("claim") == "a")
    assert summary.height == 2 and set(summary["verdict"]) == {"contradicted", "supported"}
    assert all(r["budget"] in r["scope"] for r in summary.iter_rows(named=True))


def test_claim_g_pairs_gmmpvae_with_vampprior_at_the_same_k_and_with_the_vae(tmp_path):
    def effect(s):
        if s["prior"] == "standard":
            return 0.0
        return 2.0 + 3.0 * (s["M"] > 1) * (s["kl_estimator"] != "mc")

    sim = Simulation("reproduce", 3, 1, effect=effect, inter_sd=0.1, image_sd=0.0)
    df = claims.prep(load([sim.write(tmp_path / "g", 0)]))
    g = df.filter(pl.col("claim").is_in(["g", "g*"]))
    names = set(g["comparison"])
    assert {"Mix2 (greedy) − VampPrior (Mix1, mc)", "Mix3 (greedy) − VAE",
            "Mix3 (lse) − VampPrior (Mix1, mc)"} <= names
    vamp = g.filter(pl.col("comparison") == "Mix2 (greedy) − VampPrior (Mix1, mc)").row(
        0, named=True)
    assert vamp["pairs"] == "9 of 9 found" and vamp["difference"] == pytest.approx(3.0, abs=0.3)
    assert vamp["verdict"] == cs.SUPPORTED and vamp["claim"] == "g"
    assert set(g.filter(pl.col("comparison").str.contains("lse"))["claim"]) == {"g*"}
    assert vamp["budget"] in vamp["scope"] and "early training" in vamp["budget"]
    assert vamp["paper_source"] == cp.NOT_REPORTED  # no GMMpVAE on Fashion-MNIST published
    assert vamp["reference"] == cp.DEFAULT_SMALLEST_EFFECT


def test_claim_d_is_led_by_the_papers_objective(tmp_path):
    sim = Simulation("reproduce", 3, 1, bound_slope=1.0, bound_sd=0.1)
    df = claims.prep(load([sim.write(tmp_path / "d", 0)]))
    d = df.filter(pl.col("claim").str.starts_with("d"))
    assert d["claim"].to_list() == ["d", "d*", "d*"]
    assert d["scope"][0].endswith("greedy") and all("(ours" in c for c in d["comparison"][1:])
    first = claims.summary(df).filter(pl.col("claim").str.starts_with("d")).row(0, named=True)
    assert first["claim"] == "d" and first["scope"].endswith("greedy")


def test_collapse_state_tells_a_fall_from_not_yet_spread():
    # measured shapes: greedy on Fashion-MNIST 0.009 → 0.0012; lse on digits 0.024 → 0.026
    assert collapse_state(0.0012, 1.0, 10, 3, earlier_peak=0.0094) == COLLAPSED
    assert collapse_state(0.026, 0.999, 8, 3, earlier_peak=0.025) == NOT_YET_SPREAD
    assert collapse_state(0.019, 0.999, 8, 3, earlier_peak=0.0257) == NOT_YET_SPREAD  # 0.74
    assert collapse_state(0.0012, 1.0, 10, 3) == COLLAPSED  # no record: the spread alone
    assert collapse_state(0.85, 0.03, 6, 3, earlier_peak=0.52) == HEALTHY
    assert collapse_state(0.001, 1.0, 2, 3, earlier_peak=0.01) is None  # in the warm-up


def test_claim_f_counts_not_yet_spread_as_neither_and_needs_the_low_rate(tmp_path):
    specs = [s for s in grid(Ms=(2,), Ks=(100, 500)) if s["prior"] == "pseudo_mixture"]
    root = write_v2_study(tmp_path / "f", specs, lambda s: -245.0)
    epochs = pl.read_parquet(root / "results" / "epochs.parquet")
    keys = sorted(epochs["trial_key"].unique().to_list())
    flat = keys[:2]  # two priors whose small spread never fell: 0.001 from epoch 1 on
    epochs = epochs.with_columns(pl.when(pl.col("trial_key").is_in(flat)).then(0.001)
                                 .otherwise(pl.col("spread_ratio")).alias("spread_ratio"))
    epochs.write_parquet(root / "results" / "epochs.parquet")
    frames = load([root])
    flagged = frames.trials.filter(pl.col("trial_key").is_in(flat))
    assert flagged["collapse_state"].to_list() == [NOT_YET_SPREAD] * 2
    assert flagged["collapsed"].null_count() == 2  # neither collapsed nor healthy
    f = claims.prep(frames).filter(pl.col("claim") == "f").row(0, named=True)
    assert f["comparison"].startswith("4 of 4 collapsed") and "2 not yet spread" in f[
        "comparison"]
    low, high = cs.wilson(1.0 * 2, 2)  # 4 of 4 over 2 seeds (the seeds are the sample)
    assert (f["ci_low"], f["ci_high"]) == pytest.approx((low, high))
    # none collapsed over 3 seeds: the interval is Wilson's of 0 of 3, far above 10%
    rate, deff, low, high = cs.clustered_rate(np.zeros(3), np.full(3, 9))
    assert (rate, deff) == (0.0, 9.0) and high == pytest.approx(cs.wilson(0, 3)[1])
    assert cs.fraction_verdict(low, high) == cs.CODE_INCONCLUSIVE
    assert cs.fraction_verdict(*cs.clustered_rate(np.zeros(40), np.full(40, 9))[2:]) == \
        cs.CODE_SUPPORTED


def test_the_smallest_effect_of_interest_comes_from_study_json(tmp_path):
    root = write_v2_study(tmp_path / "se", grid(), lambda s: -245.0 + 0.5 * s["M"]
                          + 0.02 * s["seed"] * s["M"])
    (root / "study.json").write_text(json.dumps({"spec": {"claims": {"smallest_effect": 2.0}}}))
    df = claims.prep(load([root]))
    row = df.filter(pl.col("comparison") == "Mix2 − Mix1").row(0, named=True)
    assert row["reference"] == 2.0 and row["reference_source"].startswith("the study's")
    assert row["min_effect"] == "a gain of 2 nat is excluded"
    assert row["verdict"] == cs.SUPPORTED  # a gain, but a smaller one than the study cares for
    line = next(x for x in claims.notes(df) if x.startswith("(a) Mix2 − Mix1"))
    assert "max 4 epochs" in line and "test images" in line and "per-seed sd" in line


def test_the_table_and_csv_name_the_budget(tmp_path):
    df = claims.prep(load([write_v2_study(tmp_path / "t", grid(), lambda s: -245.0
                                          + s["M"] + 0.02 * s["seed"])]))
    paths = claims.render(df, tmp_path / "report")
    csv = next(p for p in paths if p.name == "claims.csv").read_text()
    html = next(p for p in paths if p.name == "claims.html").read_text()
    assert "budget" in csv.splitlines()[0] and "seeds_needed" in csv.splitlines()[0]
    assert "early training" in html and "seeds for 80% power" in html
