"""Figure data (prep) and what is drawn (matplotlib objects, not pixels)."""

from __future__ import annotations

import dataclasses
import math

import polars as pl
import pytest
from scipy import stats

from analysis import bound_gap, figure2, figure3, figure4, figure10, reconstructions


def _restrict(frames, condition: pl.Expr):
    return dataclasses.replace(frames, trials=frames.trials.filter(condition))


def _series_count(df: pl.DataFrame, panel: dict, series: list[str]) -> int:
    part = df.filter(*[pl.col(k).eq_missing(v) for k, v in panel.items()])
    return part.select(series).unique().height


def test_figure2_data_after_warmup_with_vae_in_every_k_panel(frames):
    df = figure2.prep(frames)
    # warm-up is 2 epochs: β = 1 from epoch 2 on
    assert df["epoch"].min() == 2 and df["epoch"].max() == 6
    vae = df.filter(pl.col("model") == "VAE")
    assert sorted(vae["K"].unique().to_list()) == [100, 500]
    # the seed that stopped early leaves two seeds at epoch 6
    at = vae.filter(pl.col("K") == 100).sort("epoch")
    assert at["n_seeds"].to_list() == [3, 3, 3, 3, 2]
    # mean over seeds of val_loss = 100 + 10/e − M + 0.1·seed (+ K/1000, K=500 for the VAE)
    assert at.filter(pl.col("epoch") == 2)["mean"][0] == pytest.approx(105 - 1 + 0.1 + 0.5)
    # only uniform π: no skewed-π curve
    assert df.filter(pl.col("model") == "Mix2", pl.col("K") == 100).select(
        pl.col("mean").n_unique()).item() == 5


def test_figure2_draws_one_panel_per_k_and_one_line_per_model(frames):
    df = figure2.prep(frames)
    fig = figure2.draw(df)
    panels = figure2.panels(df)
    assert len(fig.axes) == len(panels) == 3  # mlp K=100, mlp K=500, cnn K=100
    for ax, (dataset, arch, k) in zip(fig.axes, panels, strict=True):
        n = _series_count(df, {"dataset": dataset, "arch": arch, "K": k}, figure2.SERIES)
        assert len(ax.lines) == n
        assert len(ax.collections) == n  # one band per line
    assert [len(ax.lines) for ax in fig.axes] == [4, 3, 1]


def test_figure3_long_data_and_panels(frames):
    df = figure3.prep(frames)
    assert set(df["metric"]) == {"elbo_bound", "ll"}
    vae = df.filter((pl.col("model") == "VAE") & (pl.col("metric") == "ll"))
    # the VAE is flat across the K values of its panel
    assert vae["K"].sort().to_list() == [100, 500] and vae["mean"].n_unique() == 1
    assert vae["mean"][0] == pytest.approx(-94.6)
    fig = figure3.draw(df)
    # 2 rows (bound, IS LL) × 2 columns (mlp, cnn)
    assert len(fig.axes) == 4
    mlp_counts = [len(fig.axes[i].containers) for i in (0, 2)]
    assert mlp_counts == [4, 4]  # VAE, Mix1, Mix2, Mix3
    assert len(fig.axes[1].containers) == 1
    # Mix3 has only K = 100 completed: one point
    mix3 = df.filter((pl.col("model") == "Mix3") & (pl.col("metric") == "elbo_bound"))
    assert mix3["K"].to_list() == [100]


def test_figure4_panels_per_m_and_one_line_per_experiment(frames):
    df = figure4.prep(frames)
    assert sorted(df["M"].unique().to_list()) == [2, 3]
    assert df.filter(pl.col("M") == 2)["pi_label"].to_list() == ["(0.5, 0.5)", "(0.7, 0.3)"]
    row = df.filter(pl.col("pi_label") == "(0.7, 0.3)").row(0, named=True)
    assert row["mean"] == pytest.approx(-88.3)
    # the interval over seeds: Student's t with n − 1 df, independently from SciPy
    lls = frames.trials.filter((pl.col("pi_label") == "(0.7, 0.3)")
                               & (pl.col("state") == "COMPLETED"))["test_ll"].to_numpy()
    if lls.size > 1:
        low, high = stats.t.interval(0.95, lls.size - 1, loc=lls.mean(), scale=stats.sem(lls))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    else:
        assert row["n_seeds"] == 1 and math.isnan(row["half"])
    assert figure4.notes(df) == []
    fig = figure4.draw(df)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.containers) == 1  # one experiment: mnist mlp K=100
        assert len(ax.get_xticklabels()) == 2


def test_figure4_without_m3_notes_the_missing_panel(frames):
    df = figure4.prep(_restrict(frames, pl.col("M") != 3))
    assert df["M"].unique().to_list() == [2]
    assert len(figure4.draw(df).axes) == 1
    assert any("M = 3" in n for n in figure4.notes(df))


def test_figure4_is_empty_without_several_pi_settings(frames):
    assert figure4.prep(_restrict(frames, pl.col("pi_uniform"))).is_empty()


def test_figure10_shared_bins_and_densities(frames):
    df = figure10.prep(frames)
    labels = df["label"].unique()
    assert len(labels) == 9
    assert df.group_by("label").len()["len"].to_list() == [figure10.N_BINS] * 9
    # the same bin edges for every model of the dataset
    assert df.group_by("bin").agg(pl.col("left").n_unique())["left"].max() == 1
    # densities integrate to one per model; counts add up to the images
    per = df.group_by("label").agg(
        (pl.col("density") * pl.col("width")).sum().alias("area"),
        pl.col("count").sum().alias("n"), pl.col("n_images").first())
    assert per["area"].to_list() == pytest.approx([1.0] * 9)
    assert (per["n"] == per["n_images"]).all()
    assert df.filter(pl.col("label") == "mlp VAE")["n_images"][0] == 12  # 3 seeds × 4 images
    fig = figure10.draw(df)
    assert len(fig.axes) == 9
    assert all(len(ax.patches) == figure10.N_BINS for ax in fig.axes)


def test_figure10_compare_draws_one_set_of_bars_per_study(merged):
    df = figure10.prep(merged)
    fig = figure10.draw(df)
    keys = df.select(figure10.PANEL).unique(maintain_order=True).rows()
    for ax, (dataset, label) in zip(fig.axes, keys, strict=True):
        n = df.filter((pl.col("dataset") == dataset) & (pl.col("label") == label))[
            "study"].n_unique()
        assert len(ax.patches) == n * figure10.N_BINS
    assert max(len(ax.patches) for ax in fig.axes) == 2 * figure10.N_BINS


def test_reconstructions_first_seed_per_model(frames):
    df = reconstructions.prep(frames)
    # images exist for the mlp models' seed 0 only (8 models); the cnn model has none
    assert df.height == 8 and set(df["seed"]) == {0} and set(df["arch"]) == {"mlp"}
    assert df["reconstructions"].null_count() == 0 and df["samples"].null_count() == 0
    assert reconstructions.notes(df) == []
    fig = reconstructions.draw(df)
    assert len(fig.axes) == 16
    assert sum(len(ax.images) for ax in fig.axes) == 16


def test_bound_gap_figure_has_one_point_per_model(frames):
    df = bound_gap.prep(frames)
    fig = bound_gap.draw(df)
    assert len(fig.axes) == 1
    points = sum(len(c.get_offsets()) for c in fig.axes[0].collections)
    assert points == df.height == 9
    assert len(fig.axes[0].lines) == 1  # the y = x reference


def test_figure10_caps_the_panels_and_says_so(frames):
    df = figure10.prep(frames, max_panels=3)
    shown = df["label"].unique(maintain_order=True).to_list()
    assert shown == ["mlp VAE", "mlp Mix1 K=100", "mlp Mix1 K=500"]
    assert figure10.notes(df) == ["The figure shows 3 of 9 models (uniform π first, then in "
                                  "table order)."]
    assert len(figure10.draw(df).axes) == 3
    assert figure10.notes(figure10.prep(frames)) == []


def test_reconstructions_found_in_a_moved_study_folder(frames):
    # trial_dir recorded on the cluster that ran the study; the images now live in STUDY/trials
    moved = dataclasses.replace(frames, trials=frames.trials.with_columns(
        pl.format("/cluster/scratch/{}", "trial_key").alias("trial_path")))
    df = reconstructions.prep(moved)
    assert df.height == 8 and df["samples"].str.contains("/trials/").all()
