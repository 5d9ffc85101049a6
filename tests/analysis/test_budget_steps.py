"""analysis/budget_steps.py: what each budget of a study cost, against sums and a brute-force
union of the trials' intervals (one boolean per second) on a hand-made study that holds a
scratch budget, a continued one with a carried trial, and new seeds added later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import budget_steps as bs
from analysis.load import load

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

# key, max_epochs, epochs_run, continued_from, carried_from, start (s after T0), end, eval s
TRIALS = [
    ("a4", 4, 4, None, None, 0, 100, 10.0),
    ("b4", 4, 4, None, None, 10, 130, 11.0),
    ("c4", 4, 3, None, None, 150, 220, 12.0),  # stopped early at epoch 3
    ("a8", 8, 8, "a4", None, 1000, 1090, 13.0),
    ("b8", 8, 8, "b4", None, 1050, 1200, 14.0),
    ("c8", 8, 3, None, "c4", 0, 0, 0.0),  # carried: c4's result, no cost
    ("d8", 8, 8, None, None, 5000, 5300, 15.0),  # a new seed, a later `--seeds` run
]


def seconds(key: str, epoch: int) -> float:
    return 1.0 + 0.1 * epoch + 0.01 * (ord(key[0]) - ord("a"))


def write(root: Path, *, v3: bool = True) -> Path:
    (root / "results").mkdir(parents=True)
    trials, epochs = [], []
    for key, budget, ran, cont, carried, start, end, ev in TRIALS:
        if not v3 and budget != 4:
            continue
        row = {"study": "s", "trial_key": key, "state": "COMPLETED", "dataset": "fashion_mnist",
               "arch": "mlp", "prior": "standard", "kl_estimator": "mc", "M": 1, "K": 1,
               "seed": 0, "max_epochs": budget, "epochs_run": ran, "test_ll": -250.0,
               "started_at": T0 + timedelta(seconds=start),
               "ended_at": T0 + timedelta(seconds=end), "eval_seconds": ev,
               "trial_dir": f"trials/{carried or key}"}
        if v3:
            row |= {"continued_from": cont, "carried_from": carried, "schema_version": 3}
        trials.append(row)
        if carried is None:  # a continued trial's epochs include its source's
            epochs += [{"study": "s", "trial_key": key, "epoch": e, "seconds": seconds(key, e)}
                       for e in range(1, ran + 1)]
    pq.write_table(pa.Table.from_pylist(trials), root / "results" / "trials.parquet")
    pq.write_table(pa.Table.from_pylist(epochs), root / "results" / "epochs.parquet")
    return root


def brute_union(rows: list[tuple]) -> float:
    busy = np.zeros(6000, dtype=bool)
    for *_, start, end, _ in rows:
        busy[start:end] = True
    return float(busy.sum())


@pytest.fixture(scope="module")
def steps(tmp_path_factory) -> pl.DataFrame:
    return bs.prep(load([write(tmp_path_factory.mktemp("steps") / "s")]))


def test_counts_per_budget(steps):
    rows = {r["max_epochs"]: r for r in steps.iter_rows(named=True)}
    assert set(rows) == {4, 8}
    assert (rows[4]["trials"], rows[4]["new"], rows[4]["continued"], rows[4]["carried"],
            rows[4]["from_budget"]) == (3, 3, 0, 0, None)
    assert (rows[8]["trials"], rows[8]["new"], rows[8]["continued"], rows[8]["carried"],
            rows[8]["from_budget"]) == (4, 1, 2, 1, 4)


def test_trial_epochs_and_seconds_are_the_budgets_own(steps):
    rows = {r["max_epochs"]: r for r in steps.iter_rows(named=True)}
    own = {  # key -> the epochs trained for its own budget
        "a4": range(1, 5), "b4": range(1, 5), "c4": range(1, 4),
        "a8": range(5, 9), "b8": range(5, 9), "d8": range(1, 9)}
    for budget, keys in ((4, ("a4", "b4", "c4")), (8, ("a8", "b8", "d8"))):
        assert rows[budget]["trial_epochs"] == sum(len(own[k]) for k in keys)
        train = sum(seconds(k, e) for k in keys for e in own[k])
        assert rows[budget]["train_seconds"] == pytest.approx(train)
        assert rows[budget]["seconds_per_trial_epoch"] == pytest.approx(
            train / rows[budget]["trial_epochs"])
        evals = sum(t[7] for t in TRIALS if t[0] in keys)
        assert rows[budget]["eval_seconds"] == pytest.approx(evals)


def test_wall_clock_is_the_union_of_the_trained_trials_intervals(steps):
    rows = {r["max_epochs"]: r for r in steps.iter_rows(named=True)}
    for budget in (4, 8):
        trained = [t for t in TRIALS if t[1] == budget and t[4] is None]
        assert rows[budget]["wall_seconds"] == pytest.approx(brute_union(trained))
    # the gap between the first run at 8 and the later seeds is not counted
    assert rows[8]["wall_seconds"] == pytest.approx(200 + 300)


def test_a_study_without_budget_columns_is_one_budget_of_new_trials(tmp_path):
    df = bs.prep(load([write(tmp_path / "s", v3=False)]))
    assert df.height == 1
    r = df.row(0, named=True)
    assert (r["max_epochs"], r["trials"], r["new"], r["continued"], r["carried"],
            r["trial_epochs"]) == (4, 3, 3, 0, 0, 11)


def test_shown_table_notes_and_files(steps, tmp_path):
    shown = bs._shown(steps)
    assert shown["budget"].to_list() == ["scratch → 4", "4 → 8"]
    assert shown["wall clock"].to_list() == ["3 min 20 s", "8 min 20 s"]
    lines = bs.notes(steps)
    assert lines[1] == ("s: max 8 epochs (from 4) took 8 min 20 s of wall clock for 16 "
                        "trial-epochs, 1 trial carried.")
    paths = bs.render(steps, tmp_path)
    assert {p.name for p in paths} == {"budget_steps.csv", "budget_steps.md",
                                       "budget_steps.html"}


@pytest.mark.parametrize("value, text", [(None, "—"), (41.4, "41 s"), (1564, "26 min 04 s"),
                                         (3725, "1 h 02 min")])
def test_duration(value, text):
    assert bs.duration(value) == text
