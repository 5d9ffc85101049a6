"""A study holding two budgets of the same configurations (as `gmmpvae extend` leaves it) is
never pooled over budgets: the tables and figures of one model give one row per budget, each
with its own seeds; the outputs drawn against the epoch take each configuration's largest
budget (its epochs hold the smaller one's); the budget curves name a model once across budgets.
Checked against the values the hand-made study was written with."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analysis import budget_curves, collapse, figure2, figure3, figure4, table1
from analysis.budget_keys import at_largest_budget
from analysis.load import load

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from budget_study import write_budget_study  # noqa: E402
from v2_study import grid  # noqa: E402

BUDGETS = (4, 8)


def ll(s: dict, budget: int) -> float:
    return -260.0 + 2.0 * budget + 0.1 * s["seed"] + (0.5 if s["prior"] != "standard" else 0.0)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    specs = grid(estimators=("lse",), Ms=(1, 2), Ks=(100,), collapsed=())
    for s in list(specs):  # Figure 4's axis: a second π at M = 2
        if s["M"] == 2 and s["prior"] != "standard":
            specs.append({**s, "pi": [0.2, 0.8]})
    return load([write_budget_study(tmp_path_factory.mktemp("apart") / "s", specs,
                                    lambda s, e: -300.0 + e, ll, budgets=BUDGETS)])


def test_max_epochs_is_a_grouping_key_and_in_the_label(frames):
    assert "max_epochs" in frames.extra_keys
    row = frames.trials.filter(pl.col("max_epochs") == 8).row(0, named=True)
    assert row["label"].endswith(" 8 epochs") and row["variant"].endswith("8 epochs")
    assert not row["model_label"].endswith("epochs")
    assert row["label"].startswith(row["model_label"])


def test_a_table_row_is_one_model_at_one_budget(frames):
    df = table1.prep(frames)
    assert set(df["n_seeds"].to_list()) == {3}
    assert df.filter(pl.col("label").str.contains("Mix1")).height == len(BUDGETS)


def test_table1_means_are_each_budgets_own(frames):
    df = table1.prep(frames)
    for budget in BUDGETS:
        vae = df.filter(pl.col("label").str.starts_with("mlp VAE ")
                        & pl.col("label").str.ends_with(f" {budget} epochs"))
        expected = np.mean([ll({"seed": s, "prior": "standard"}, budget) for s in (0, 1, 2)])
        assert vae["test_ll_mean"].to_list() == pytest.approx([expected])


def test_figure4_compares_pi_within_a_budget(frames):
    df = figure4.prep(frames)
    assert set(df["n_seeds"].to_list()) == {3}
    assert df.group_by("experiment").len().height == len(BUDGETS)
    for budget in BUDGETS:
        assert df.filter(pl.col("experiment").str.ends_with(f"{budget} epochs"))[
            "mean"].to_list() == pytest.approx([ll({"seed": 1, "prior": "m"}, budget)] * 2)


def test_epoch_curves_take_each_configurations_largest_budget(frames):
    largest = at_largest_budget(frames.trials)
    assert set(largest["max_epochs"].to_list()) == {8}
    assert largest.height == frames.trials.height // len(BUDGETS)
    assert set(figure2.prep(frames)["n_seeds"].to_list()) == {3}
    counts = collapse.prep(frames).filter(pl.col("M") == 1)["n_seeds"]
    assert set(counts.to_list()) == {3}  # Mix1, K = 100: 3 seeds, not 6


def test_figure3_draws_one_line_per_model_at_the_largest_budget(frames):
    """Figure 3 at each configuration's largest budget: one line per model (VAE, Mix1,
    Mix2), its mean the 8-epoch trials' own, over 3 seeds; not one line per model and
    budget (a legend taller than the figure, on reproduce_fashion's four budgets)."""
    df = figure3.prep(frames).filter(pl.col("metric") == "ll")
    assert set(df["n_seeds"].to_list()) == {3}
    assert df.select("model", "variant").unique().height == 3
    assert set(df["variant"].to_list()) == {v for v in df["variant"].to_list()
                                            if v.endswith("8 epochs")}
    vae = df.filter(pl.col("model") == "VAE")["mean"].to_list()
    assert vae == pytest.approx([np.mean([ll({"seed": s, "prior": "standard"}, 8)
                                          for s in (0, 1, 2)])] * len(vae))


def test_budget_curves_name_a_model_once_across_budgets(frames):
    df = budget_curves.prep(frames)
    assert not any(label.endswith("epochs") for label in df["label"].to_list())
    assert set(df.group_by("label").len()["len"].to_list()) == {len(BUDGETS)}


def test_an_extension_under_way_keeps_the_smaller_budget_until_the_larger_completes(frames):
    trials = frames.trials.with_columns(
        pl.when((pl.col("max_epochs") == 8) & (pl.col("seed") == 0))
        .then(pl.lit("NOT STARTED")).otherwise(pl.col("state")).alias("state"))
    kept = at_largest_budget(trials)
    assert set(kept.filter(pl.col("seed") == 0)["max_epochs"].to_list()) == {4}
    assert set(kept.filter(pl.col("seed") == 0)["state"].to_list()) == {"COMPLETED"}
    assert set(kept.filter(pl.col("seed") != 0)["max_epochs"].to_list()) == {8}
