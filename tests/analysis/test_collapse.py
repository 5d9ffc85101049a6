"""analysis/collapse.py (the diagnostics figure) and the collapse flags of analysis/status.py:
prep data, panels and lines from matplotlib objects, a version-1 study skipped, the threshold
equal to models.diagnostics'."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

from analysis import collapse, status
from analysis.load import load

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from v2_study import N_EPOCHS, grid, write_v2_study  # noqa: E402


def _frames(tmp_path):
    specs = grid(estimators=("greedy", "lse"), Ms=(1, 3), Ks=(10, 100), seeds=(0, 1))
    return load([write_v2_study(tmp_path / "c", specs, lambda s: -240.0 - s["seed"])])


def test_collapse_figure_has_a_panel_per_diagnostic_and_estimator(tmp_path):
    df = collapse.prep(_frames(tmp_path))
    assert set(df["kl_estimator"]) == {"greedy", "lse"} and df["epoch"].max() == N_EPOCHS
    assert (df["n_seeds"] == 2).all()  # mean over both seeds; the VAE has no rows
    spread = df.filter((pl.col("diagnostic") == "spread_ratio") & (pl.col("epoch") == 4))
    assert sorted(spread.filter(pl.col("kl_estimator") == "greedy")["mean"]) == [0.001] * 4
    fig = collapse.draw(df)
    assert len(fig.axes) == len(collapse.panels(df)) == 4 * 2
    for ax in fig.axes:
        assert len(ax.lines) in (4, 5)  # 4 models (M 1, 3 × K 10, 100); + threshold line
    assert fig.axes[0].get_yscale() == "log" and len(fig.axes[0].lines) == 5
    notes = collapse.notes(df)
    rule = ("(last epoch, mean over seeds: spread ratio < 0.05 and perplexity/K > 0.5; "
            "collapsed when the spread fell below 0.5 × its largest earlier value, "
            "models.collapse_rule).")
    # greedy's spread fell from 0.5 (epoch 1) to 0.001: collapsed, not "not yet spread"
    assert notes == [f"KL=greedy: 4 of 4 models end collapsed, 0 not yet spread {rule}",
                     f"KL=lse: 0 of 4 models end collapsed, 0 not yet spread {rule}"]
    flat = df.with_columns(pl.when(pl.col("diagnostic") == "spread_ratio").then(0.001)
                           .otherwise(pl.col("mean")).alias("mean"))
    assert collapse.notes(flat)[0] == f"KL=greedy: 0 of 4 models end collapsed, 4 not yet " \
                                      f"spread {rule}"


def test_threshold_is_the_models_one():
    from models.diagnostics import COLLAPSE_SPREAD

    assert collapse.THRESHOLD == COLLAPSE_SPREAD  # one rule (models.collapse_rule), re-exported


def test_status_counts_and_names_collapsed_trials(tmp_path):
    df = status.prep(_frames(tmp_path))
    lines = status.collapse_notes(df)
    assert len(lines) == 1 and lines[0].startswith("v2: 8 of 16 pseudo-mixture trials")


def test_version_1_study_has_no_collapse_data(frames):
    assert collapse.prep(frames).is_empty()
    assert status.collapse_notes(status.prep(frames)) == []


def test_kl_estimates_table_puts_u_u_lse_and_kl_mc_side_by_side(tmp_path, frames):
    from analysis import kl_estimates

    df = kl_estimates.prep(_frames(tmp_path))
    assert df.height == 2 * (1 + 2 * 2)  # per estimator: VAE + M (1, 3) × K (10, 100)
    greedy = df.filter(pl.col("label").str.contains("KL=greedy") & (pl.col("model") != "VAE"))
    assert (greedy["U"] == 14.0).all() and (greedy["collapsed"] == 2).all()
    lse = df.filter(pl.col("label").str.contains("KL=lse") & (pl.col("model") != "VAE"))
    assert lse["U_gap"].to_list() == pytest.approx([77.4] * 4)
    assert lse["lse_gap"].to_list() == pytest.approx([0.4] * 4)
    shown = kl_estimates.display(df)
    assert "U_lse − KL_MC" in shown.columns and "study" not in shown.columns
    assert kl_estimates.prep(frames).is_empty()  # version 1: no U_lse
