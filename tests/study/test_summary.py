"""study.summary: the dry-run text, the end-of-run lines, best trials, overlap of trials, the
stranded exit — on records built here (no Ray)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from study import store, summary
from study.outcome import Outcome
from study.spec import load_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def brute_overlap(intervals):
    """The most intervals open at one instant, by checking every instant just after a start."""
    best = 0
    for start, _ in intervals:
        best = max(best, sum(s <= start < e for s, e in intervals))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_max_overlap_matches_a_brute_force_count(seed):
    import random

    rng = random.Random(seed)
    intervals = []
    for _ in range(12):
        a, b = sorted(rng.sample(range(40), 2))
        intervals.append((a, b))
    assert summary.max_overlap(intervals) == brute_overlap(intervals)


def test_touching_intervals_do_not_overlap_and_open_ones_are_ignored():
    assert summary.max_overlap([(0, 1), (1, 2), (2, 3)]) == 1
    assert summary.max_overlap([(0, 2), (1, None), (None, 3)]) == 1
    assert summary.max_overlap([]) == 0


def test_record_intervals_reads_iso_times():
    records = [{"started_at": T0.isoformat(), "ended_at": (T0 + timedelta(seconds=5)).isoformat()},
               {"started_at": None, "ended_at": T0.isoformat()}]
    assert summary.record_intervals(records) == [(T0, T0 + timedelta(seconds=5))]


def test_best_records_by_metric_and_by_test_ll():
    records = [
        {"trial_key": "a", "state": "COMPLETED", "best_val_loss": 3.0, "test_ll": -9.0},
        {"trial_key": "b", "state": "COMPLETED", "best_val_loss": 2.0, "test_ll": -10.0},
        {"trial_key": "c", "state": "ERROR", "best_val_loss": 1.0, "test_ll": None},
        {"trial_key": "d", "state": "COMPLETED", "best_val_loss": None, "test_ll": -8.0},
    ]
    best = summary.best_records(records)
    assert best["metric"]["trial_key"] == "b" and best["test_ll"]["trial_key"] == "d"
    by_max = summary.best_records(records, "best_val_loss", "max")
    assert by_max["metric"]["trial_key"] == "a"
    assert summary.best_records([]) == {"metric": None, "test_ll": None}


def test_describe_lists_every_planned_trial(tmp_path):
    spec = load_spec("quickstart", {"study.storage": str(tmp_path / "q")})
    text = summary.describe(spec)
    plan = spec.plan()
    assert f"trials     {len(plan)}:" in text
    for config in plan:
        assert config["trial_key"] in text


def _outcome(spec, records, stranded=False):
    consolidated = store.Consolidated(trials=len(records), epochs=0, test_ll=0,
                                      states={"COMPLETED": len(records)}, records=records)
    return Outcome(spec.storage, consolidated, slots=2, max_concurrent=2, observed_concurrency=1,
                   seconds=1.5, optuna={"COMPLETE": len(records)}, stranded=stranded, spec=spec)


def test_summary_lines_say_what_ran_and_what_is_left(tmp_path):
    spec = load_spec("quickstart", {"study.storage": str(tmp_path / "q")})
    key = spec.plan()[0]["trial_key"]
    records = [{"trial_key": key, "state": "COMPLETED", "best_val_loss": 1.25, "test_ll": -2.5,
                "device": "cpu"}]
    lines = summary.summary_lines(spec, _outcome(spec, records))
    assert lines[0].startswith(f"study {spec.name}: 1 trial(s) recorded (1 COMPLETED)")
    assert "device     cpu: 1 trial(s)" in lines
    left = spec.search.num_samples - 1
    assert any(f"unfinished {left} trial(s)" in line for line in lines)
    assert f"best       by best_val_loss: {key} (best_val_loss 1.2500)" in lines
    assert f"best       by test_ll: {key} (test_ll -2.5000)" in lines


def test_stranded_exit_is_zero_or_three_with_one_line(tmp_path, capsys):
    spec = load_spec("quickstart", {"study.storage": str(tmp_path / "q")})
    assert summary.stranded_exit(spec, _outcome(spec, [])) == 0
    assert capsys.readouterr().err == ""
    assert summary.stranded_exit(spec, _outcome(spec, [], stranded=True)) == summary.STRANDED_EXIT
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"gmmpvae resume {spec.storage}" in err
    assert f"{spec.search.num_samples} trial(s) unfinished" in err



def test_summary_names_the_best_trial_by_an_epoch_metric_from_its_last_epoch(tmp_path):
    """An open search ranked by val_elbo_mc (an epoch metric, not in the trial records): the
    best by it comes from each trial's last epoch in results/epochs.parquet — the value the
    trial's final result told the searcher —, next to the best by test_ll."""
    import polars as pl

    spec = load_spec("open_search_digits", {"study.storage": str(tmp_path / "o")})
    (tmp_path / "o" / "results").mkdir(parents=True)
    pl.DataFrame({"trial_key": ["a", "a", "b", "b", "c"], "epoch": [1, 2, 1, 2, 1],
                  # a is best at its first epoch, but its last epoch is what was told
                  "val_elbo_mc": [-10.0, -40.0, -30.0, -20.0, None]}).write_parquet(
        tmp_path / "o" / "results" / "epochs.parquet")
    records = [{"trial_key": k, "state": "COMPLETED", "best_val_loss": 1.0, "test_ll": ll}
               for k, ll in (("a", -5.0), ("b", -6.0), ("c", -7.0))]
    lines = summary.summary_lines(spec, _outcome(spec, records))
    assert "best       by val_elbo_mc: b (val_elbo_mc -20.0000)" in lines
    assert "best       by test_ll: a (test_ll -5.0000)" in lines


def test_summary_says_when_no_trial_has_the_metric(tmp_path):
    spec = load_spec("open_search_digits", {"study.storage": str(tmp_path / "o")})
    records = [{"trial_key": "a", "state": "COMPLETED", "test_ll": -5.0}]
    lines = summary.summary_lines(spec, _outcome(spec, records))  # no epochs.parquet at all
    assert "best       by val_elbo_mc: no completed trial has a value of it" in lines
