"""``gmmpvae status`` (study.cli.status): states from records, running markers and the plan; the
listing, consolidation or not, the best trials — on a study folder of records (no Ray)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs

HERE = Path(__file__).resolve().parents[1]

from test_reliability import fake_study  # noqa: E402

from study import cli, store  # noqa: E402
from study.cli.status import MAX_ROWS, trial_states  # noqa: E402
from study.store import lock  # noqa: E402


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


def write_marker(study, key, started, seen, epoch=None, attempt=1, best=None):
    """A running marker as the trainable writes it (`study.store.running`)."""
    fs = pafs.LocalFileSystem()
    store.write_json(fs, str(study / "trials" / key / store.RUNNING_FILE), {
        "trial_key": key, "node": "node-a/10.0.0.7", "attempt": attempt,
        "started_at": started.isoformat(), "first_started_at": started.isoformat(),
        "seen_at": seen.isoformat(), "epoch": epoch, "best_val_loss": best})


def test_markers_show_running_unfinished_retried_and_not_started_trials(tmp_path, capsys):
    study, spec, keys = fake_study(tmp_path)
    live, lost, retry, waiting, done = keys[:5]
    for key in (live, lost, waiting):
        (study / "trials" / key / "trial.json").unlink()
    fs = pafs.LocalFileSystem()
    with lock.study_lock(fs, str(study), str(study)):  # a live driver, started before `now`
        now = datetime.now(UTC)
        errored = store.make_record(study=spec.name, trial_key=retry, state=store.ERROR,
                                    config=spec.plan()[keys.index(retry)], error="boom",
                                    ended_at=now - timedelta(minutes=5))
        store.write_record(fs, str(study / "trials" / retry), errored)
        write_marker(study, live, now, now + timedelta(seconds=1), epoch=3, best=1.25)
        write_marker(study, lost, now - timedelta(hours=2), now - timedelta(hours=1), epoch=2)
        write_marker(study, retry, now - timedelta(minutes=1), now, epoch=1, attempt=2)
        write_marker(study, done, now - timedelta(days=1), now - timedelta(days=1), epoch=9)
        assert cli.main(["status", str(study), "--no-consolidate"]) == 0
        out = capsys.readouterr().out
    assert (f"trials     {spec.search.num_samples} planned: {len(keys) - 4} COMPLETED, "
            f"1 NOT STARTED, 2 RUNNING, 1 UNFINISHED") in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert rows[live].startswith(f"  {live:<44} {'RUNNING':<11} {3:>6} {'1.2500':>13} {'':>10}"
                                 "  attempt 1 on node-a/10.0.0.7, started ")
    assert "last seen" in rows[live] and "driver gone" not in rows[live]
    assert rows[retry].split()[1:3] == ["RUNNING", "1"] and "attempt 2" in rows[retry]
    assert rows[lost].split()[1:3] == ["UNFINISHED", "2"] and "driver gone; attempt 1" in (
        rows[lost])
    assert rows[waiting].split()[1:] == ["NOT", "STARTED"]
    assert rows[done].split()[1] == "COMPLETED"  # an older marker: the record wins
    assert ("unfinished 1 trial(s) were running when their driver stopped (last seen "
            f"{(now - timedelta(hours=1)).strftime('%Y-%m-%d %H:%M:%S')} UTC): the running "
            "driver continues them") in out
    # The driver gone: the trials without a record are unfinished, resume is the way on; the
    # interrupted retry is its record again (resume goes by records).
    assert cli.main(["status", str(study), "--no-consolidate"]) == 0
    out = capsys.readouterr().out
    assert "2 UNFINISHED" in out and "RUNNING" not in out and "driver     running" not in out
    assert f"  {retry:<44} ERROR" in out
    assert f"continue with `gmmpvae resume {spec.storage}`" in out
