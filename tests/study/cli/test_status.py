"""``gmmpvae status`` (study.cli.status): states from records, Tune and the plan; the listing,
consolidation or not, the best trials — on a study folder of records (no Ray)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from test_reliability import fake_study  # noqa: E402

from study import cli  # noqa: E402
from study.cli.status import MAX_ROWS, trial_states  # noqa: E402


def test_the_record_wins_then_tune_then_the_plan():
    records = [{"trial_key": "a", "state": "COMPLETED"}, {"trial_key": "b", "state": "ERROR"}]
    tune = {"b": "RUNNING", "c": "PENDING"}
    states = trial_states(records, tune, ["a", "b", "c", "d"])
    assert states == {"a": "COMPLETED", "b": "ERROR", "c": "PENDING", "d": "NOT STARTED"}
    assert list(states) == sorted(states)
    assert trial_states([], {"x": "RUNNING"}, None) == {"x": "RUNNING"}


def test_status_lists_every_trial_and_consolidates(tmp_path, capsys):
    study, spec, keys = fake_study(tmp_path)
    assert not (study / "results").exists()
    assert cli.main(["status", str(study)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"study {spec.name}  ({spec.storage}; git unknown)")
    assert f"trials     {spec.search.num_samples} planned: {len(keys)} COMPLETED" in out
    for key in keys:
        assert f"  {key:<44} COMPLETED" in out
    best = min(keys)  # every fake trial has the same best_val_loss: the first key wins
    assert f"best by best_val_loss: {best} (best_val_loss 2.5000)" in out
    assert (study / "results" / "trials.parquet").is_file()


def test_no_consolidate_only_reads(tmp_path, capsys):
    study, _, keys = fake_study(tmp_path)
    assert cli.main(["status", str(study), "--no-consolidate"]) == 0
    assert f"{len(keys)} COMPLETED" in capsys.readouterr().out
    assert not (study / "results").exists()


def test_a_long_list_is_cut_unless_all_is_asked(tmp_path, capsys, monkeypatch):
    study, _, keys = fake_study(tmp_path)
    monkeypatch.setattr("study.cli.status.MAX_ROWS", 2)
    assert cli.main(["status", str(study), "--no-consolidate"]) == 0
    out = capsys.readouterr().out
    assert f"… {len(keys) - 2} more (--all lists them)" in out
    assert sum(f"  {key:<44} COMPLETED" in out for key in keys) == 2
    assert cli.main(["status", str(study), "--no-consolidate", "--all"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {key:<44} COMPLETED" in out for key in keys) and "more (--all" not in out
    assert MAX_ROWS == 60


def test_a_folder_without_a_study_is_one_line(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gmmpvae status: error: {tmp_path} is not a study folder (no study.json)"
