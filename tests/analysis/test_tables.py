"""Table 1, the paper comparison and the bound gap, against values computed by hand."""

from __future__ import annotations

import itertools
import math
import statistics

import polars as pl
import pytest

from analysis import bound_gap, paper, status, table1

METRICS = ("test_ll", "test_elbo_bound", "test_elbo_mc", "test_re", "test_kl", "test_kl_mc")


def _expected_groups(specs, trial_metrics):
    """Per model (arch, model, K, π): the metric values of its completed seeds."""
    groups: dict[tuple, list[dict]] = {}
    for s in specs:
        if s["state"] != "COMPLETED":
            continue
        model = "VAE" if s["prior"] == "standard" else f"Mix{s['M']}"
        k = None if s["prior"] == "standard" else s["K"]
        key = (s["arch"], model, k, tuple(round(p, 2) for p in s["pi"]))
        groups.setdefault(key, []).append(
            trial_metrics(s["prior"], s["M"], s["K"], s["arch"], s["pi"], s["seed"]))
    return groups


def test_table1_means_and_sample_stds_match_hand_computation(frames, specs, trial_metrics):
    df = table1.prep(frames)
    expected = _expected_groups(specs, trial_metrics)
    assert df.height == len(expected) == 9
    for row in df.iter_rows(named=True):
        pi = tuple(float(p) for p in row["pi_label"].strip("()").split(", "))
        values = expected[(row["arch"], row["model"], row["K"], pi)]
        assert row["n_seeds"] == len(values)
        for m in METRICS:
            xs = [v[m] for v in values]
            assert row[f"{m}_mean"] == pytest.approx(statistics.mean(xs))
            if len(xs) > 1:  # sample std, ddof = 1
                assert row[f"{m}_std"] == pytest.approx(statistics.stdev(xs))
            else:
                assert row[f"{m}_std"] is None


def test_table1_literal_vae_row_and_display(frames):
    df = table1.prep(frames)
    vae = df.filter(pl.col("model") == "VAE").row(0, named=True)
    # test_ll of the three seeds: -94.5, -95.1, -94.2
    assert vae["test_ll_mean"] == pytest.approx(-94.6)
    assert vae["test_ll_std"] == pytest.approx(math.sqrt(0.21))
    assert vae["n_seeds"] == 3 and vae["K"] is None
    # the paper's order: VAE, Mix1, Mix2, Mix3 within mlp, then cnn
    assert df["model"].to_list()[:2] == ["VAE", "Mix1"] and df["arch"][-1] == "cnn"
    shown = table1.display(df)
    assert "study" not in shown.columns  # one study: no study column
    assert shown.row(0, named=True)["IS LL"] == "-94.60 ± 0.46"
    assert shown.row(0, named=True)["K"] == "–"
    cnn = shown.filter(pl.col("arch") == "cnn").row(0, named=True)
    assert cnn["IS LL"] == "-87.00"  # one seed: no ± std
    # ERROR and RUNNING trials are not seeds: Mix3 K=500 has none completed
    assert df.filter((pl.col("model") == "Mix3") & (pl.col("K") == 500)).is_empty()


def test_table1_compare_has_a_study_column(merged):
    df = table1.prep(merged)
    assert set(df["study"]) == {"alpha", "beta_laptop"}
    shown = table1.display(df)
    assert "study" in shown.columns
    beta_vae = df.filter((pl.col("study") == "beta_laptop") & (pl.col("model") == "VAE"))
    assert beta_vae["n_seeds"].to_list() == [2]
    assert beta_vae["test_elbo_mc_mean"].to_list() == [None]  # column absent in that study


def test_paper_comparison_joins_the_right_rows(frames):
    df = paper.prep(frames)
    reported = paper.paper_results()
    assert df.height == reported.filter(pl.col("dataset") == "mnist").height
    vae = df.filter((pl.col("table") == 1) & (pl.col("method") == "VAE")).row(0, named=True)
    assert vae["ll_bound_mean"] == -93.89
    assert vae["test_elbo_bound_mean"] == pytest.approx(-99.2)
    assert vae["delta"] == pytest.approx(-99.2 + 93.89)
    vamp = df.filter(pl.col("method") == "VAE+VampPrior").row(0, named=True)
    assert vamp["label"] == "mlp Mix1 K=500" and vamp["n_seeds"] == 2
    # only uniform π is matched: the skewed Mix2 K=100 does not double the row
    mix2 = df.filter((pl.col("method") == "GMMpVAE+MLPs+Mix2") & (pl.col("K") == 100))
    assert mix2.height == 1 and mix2["test_elbo_bound_mean"][0] == pytest.approx(-91.05)
    # other methods (no configuration) are listed, never matched
    others = df.filter(pl.col("arch").is_null())
    assert others.height > 0 and others["n_seeds"].null_count() == others.height
    # rows we did not measure stay, with null measurements
    pixel = df.filter(pl.col("arch") == "pixel")
    assert pixel.height == 10 and pixel["n_seeds"].null_count() == 10  # 9 in Table 1, 1 in 2


def test_paper_comparison_is_empty_for_a_dataset_the_paper_lacks(frames):
    other = frames.__class__(
        trials=frames.trials.with_columns(pl.lit("digits").alias("dataset")),
        epochs=frames.epochs, test_ll=frames.test_ll, studies=frames.studies,
        extra_keys=frames.extra_keys)
    assert paper.prep(other).is_empty()


def _brute_kendall(x, y):
    s = nx = ny = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        a = (x[i] > x[j]) - (x[i] < x[j])
        b = (y[i] > y[j]) - (y[i] < y[j])
        s += a * b
        nx += a != 0
        ny += b != 0
    return s / math.sqrt(nx * ny)


def _ranks(values):
    """Average ranks, 1 = largest."""
    order = sorted(values, reverse=True)
    return [statistics.mean(i + 1 for i, v in enumerate(order) if v == x) for x in values]


def test_bound_gap_values_ranks_and_correlations(frames, specs, trial_metrics):
    df = bound_gap.prep(frames)
    expected = _expected_groups(specs, trial_metrics)
    assert df.height == len(expected)
    for row in df.iter_rows(named=True):
        pi = tuple(float(p) for p in row["pi_label"].strip("()").split(", "))
        values = expected[(row["arch"], row["model"], row["K"], pi)]
        gaps = [v["test_ll"] - v["test_elbo_bound"] for v in values]
        assert row["gap_ll_mean"] == pytest.approx(statistics.mean(gaps))
        mc = [v["test_elbo_mc"] - v["test_elbo_bound"] for v in values]
        assert row["gap_mc_mean"] == pytest.approx(statistics.mean(mc))
    bound, ll = df["bound"].to_list(), df["ll"].to_list()
    assert df["rank_bound"].to_list() == pytest.approx(_ranks(bound))
    assert df["rank_ll"].to_list() == pytest.approx(_ranks(ll))
    rb, rl = _ranks(bound), _ranks(ll)
    assert df["kendall_tau"][0] == pytest.approx(_brute_kendall(rb, rl))
    mb, ml = statistics.mean(rb), statistics.mean(rl)
    rho = sum((a - mb) * (b - ml) for a, b in zip(rb, rl, strict=True)) / math.sqrt(
        sum((a - mb) ** 2 for a in rb) * sum((b - ml) ** 2 for b in rl))
    assert df["spearman"][0] == pytest.approx(rho)
    summary = bound_gap.agreement(df).row(0, named=True)
    assert summary["n_models"] == 9
    assert summary["best_by_ll"] == "mlp Mix3 K=100 π=(0.33, 0.33, 0.33)"
    assert summary["best_by_bound"] == "cnn Mix1 K=100"
    assert summary["same_best"] is False
    assert "different models" in bound_gap.notes(df)[0]


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1, 2, 3, 4], [1, 2, 3, 4]),
        ([1, 2, 3, 4], [4, 3, 2, 1]),
        ([1, 2, 2, 3, 5], [2, 1, 2, 4, 3]),  # ties on both sides: τ-b
    ],
)
def test_kendall_tau_matches_brute_force(x, y):
    df = pl.DataFrame({"g": ["a"] * len(x), "x": x, "y": y}, schema_overrides={
        "x": pl.Float64, "y": pl.Float64})
    tau = bound_gap.kendall_tau(df, ["g"], "x", "y")["kendall_tau"][0]
    assert tau == pytest.approx(_brute_kendall(x, y))


def test_status_lists_failed_and_missing_trials(frames):
    df = status.prep(frames)
    counts = status.counts(df)
    assert counts["completed"] == 18 and counts["failed"] == 1 and counts["missing"] == 2
    line = status.summary(df)
    assert line.startswith("Partial results: 18 of 21 trials completed")
    assert "1 failed (t017 ERROR)" in line and "2 missing (t018 RUNNING, t020 PENDING)" in line
    left_out = status.problems(df)
    assert left_out["state"].to_list() == ["ERROR", "RUNNING", "PENDING"]
    assert left_out["error"][0] == "NonFiniteLossError: loss is nan at epoch 3, batch 7"
