"""analysis/budget_verdicts.py: the claims section's comparisons lined up across budgets, on a
hand-made study holding two budgets whose K effect grows from nothing (4 epochs) to 2 nats
(8 epochs) — checked against the claims section's own rows, one budget at a time — and the
budget label it parses, against the label `claims_design.budget_expr` writes."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

from analysis import budget_verdicts as bv
from analysis import claims
from analysis import claims_design as cd
from analysis.load import load

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from budget_study import write_budget_study  # noqa: E402
from v2_study import grid  # noqa: E402

NOISE = {(0, 100): 0.0, (1, 100): 0.3, (2, 100): -0.2, (0, 500): 0.1, (1, 500): -0.25,
         (2, 500): 0.2}


def ll(s: dict, budget: int) -> float:
    if s["prior"] == "standard":
        return -258.0 + 0.5 * s["seed"]
    k_effect = 0.0 if budget == 4 else 2.0 * (s["K"] == 500)
    return -254.0 + 0.5 * s["seed"] + k_effect + NOISE[(s["seed"], s["K"])]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    specs = grid(estimators=("lse",), Ms=(1, 2), Ks=(100, 500), collapsed=())
    root = write_budget_study(tmp_path_factory.mktemp("bv") / "s", specs,
                              lambda s, e: -300.0 + e, ll, budgets=(4, 8))
    frames = load([root])
    return frames, claims.prep(frames), bv.prep(frames)


@pytest.mark.parametrize("epochs, train, early", [(10, 4000, True), (300, None, False)])
def test_budget_parts_reads_the_label_claims_design_writes(epochs, train, early):
    frame = pl.DataFrame({"max_epochs": [epochs], "max_train_examples": [train],
                          "warmup_epochs": [3], "is_samples": [500],
                          "max_test_examples": [500]})
    label = frame.select(cd.budget_expr()).item()
    assert label.endswith(", early training") is early
    rest = label.removeprefix(f"max {epochs} epochs, ").removesuffix(", early training")
    assert bv.budget_parts(label) == (epochs, rest)
    assert bv.budget_parts("no budget") == (None, "no budget")


def test_every_comparison_is_the_claims_sections_row_at_its_budget(study):
    _, rows, df = study
    claimed = rows.filter(pl.col("verdict") != "no data")
    assert df.height == claimed.height  # every comparison is held at both budgets
    for r in df.iter_rows(named=True):
        prefix = f"max {r['max_epochs']} epochs, "
        match = [m for m in claimed.iter_rows(named=True)
                 if m["claim"] == r["claim"] and m["comparison"] == r["result"]
                 and m["budget"].startswith(prefix)
                 and m["scope"].replace(m["budget"], "budget: " + m["budget"].removeprefix(
                     prefix).removesuffix(", early training")) == r["where"]]
        assert len(match) == 1, r
        assert (r["verdict"], r["difference"]) == (match[0]["verdict"], match[0]["difference"])


def test_series_pair_the_two_budgets_and_changed_marks_a_new_verdict(study):
    _, rows, df = study
    assert df.group_by("series").len()["len"].to_list() == [2] * (df.height // 2)
    for _, part in df.group_by("series"):
        assert part["max_epochs"].to_list() == [4, 8]
        verdicts = part["verdict"].to_list()
        assert part["changed"].to_list() == [False, verdicts[0] != verdicts[1]]
    k = df.filter(pl.col("claim") == "b").sort("max_epochs")
    assert k["verdict"].to_list() == ["inconclusive", "supported"]
    pairs = [(seed, m) for seed in (0, 1, 2) for m in (1, 2)]  # K 500 − 100 paired on seed, M
    expected = [sum(ll(dict(prior="pseudo_mixture", seed=seed, K=500, M=m), budget)
                    - ll(dict(prior="pseudo_mixture", seed=seed, K=100, M=m), budget)
                    for seed, m in pairs) / len(pairs) for budget in (4, 8)]
    assert k["difference"].to_list() == pytest.approx(expected)


def test_table_and_notes_name_what_changed(study, tmp_path):
    _, _, df = study
    shown = bv._shown(df)
    assert {"max 4 epochs", "max 8 epochs", "verdicts"} <= set(shown.columns)
    b = shown.filter(pl.col("claim") == "b").row(0, named=True)
    assert b["verdicts"] == "inconclusive (4) → supported (8)"
    assert b["max 8 epochs"].startswith("supported: +1.98 [")
    lines = bv.notes(df)
    changed = df.filter(pl.col("changed"))["series"].n_unique()
    assert lines[0].startswith("Budgets held: 4, 8 max epochs (all train images, warm-up 1, "
                               "IS all, all test images at each); "
                               f"{changed} of {df['series'].n_unique()} comparisons changed "
                               "verdict")
    assert "(b) K=500 − K=100 — b · fashion_mnist · mlp · lse: inconclusive (4) → supported " \
           "(8)." in lines
    assert {p.name for p in bv.render(df, tmp_path)} == {
        "budget_verdicts.csv", "budget_verdicts.md", "budget_verdicts.html"}


def test_a_study_holding_one_budget_has_no_series(tmp_path):
    specs = grid(estimators=("lse",), Ms=(1,), Ks=(100, 500), collapsed=())
    root = write_budget_study(tmp_path / "s", specs, lambda s, e: -300.0 + e, ll, budgets=(8,))
    assert bv.prep(load([root])).is_empty()


@pytest.mark.parametrize("verdicts, budgets, text", [
    (["a"], [10], "a (10)"),
    (["a", "a", "b", "a"], [10, 20, 40, 80], "a (10, 20) → b (40) → a (80)")])
def test_path(verdicts, budgets, text):
    assert bv.path(verdicts, budgets) == text
