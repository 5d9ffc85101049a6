"""study.store.running: a running attempt's marker written, refreshed, removed by the trial's
record, and judged against the record and the driver (no Ray)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pyarrow.fs as pafs

from study import store
from study.store import running

T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def start(fs, trial_dir, key="k1", attempt=1):
    return running.start(fs, trial_dir, trial_key=key, node="host/10.0.0.1", attempt=attempt,
                         first_started_at=at(0))


def test_a_marker_is_written_refreshed_and_removed_by_the_record(tmp_path):
    fs, root = store.filesystem(str(tmp_path / "s"))
    trial_dir = store.join(root, store.TRIALS_DIR, "k1")
    marker = start(fs, trial_dir, attempt=2)
    first = running.read(fs, trial_dir)
    assert {k: first[k] for k in ("trial_key", "node", "attempt", "epoch", "best_val_loss")} == {
        "trial_key": "k1", "node": "host/10.0.0.1", "attempt": 2, "epoch": None,
        "best_val_loss": None}
    assert first["first_started_at"] == at(0) and first["seen_at"] >= first["started_at"]
    seen = []
    callback = marker.beating(lambda metrics, save: seen.append(
        (metrics["epoch"], running.read(fs, trial_dir)["epoch"], save)))
    callback({"epoch": 3, "best_val_loss": 1.5, "val_loss": 1.7}, "save")
    assert seen == [(3, 3, "save")]  # the heartbeat comes before the reporter
    assert running.read(fs, trial_dir)["best_val_loss"] == 1.5
    assert store.read_markers(fs, root) == {"k1": running.read(fs, trial_dir)}
    store.write_record(fs, trial_dir, store.make_record(
        study="s", trial_key="k1", state=store.COMPLETED, config={}))
    assert running.read(fs, trial_dir) is None and store.read_markers(fs, root) == {}
    assert store.read_record(fs, trial_dir)["state"] == store.COMPLETED
    running.remove(fs, trial_dir)  # none there: fine


def test_on_a_store_without_local_files_the_marker_goes_the_store_way(tmp_path):
    """A filesystem that is not the local one (as an object store): one upload per write, and
    removing a marker that is not there is no error."""
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    start(fs, "study/trials/k1").beat({"epoch": 1, "best_val_loss": 2.0})
    assert store.read_markers(fs, "study")["k1"]["epoch"] == 1
    store.write_record(fs, "study/trials/k1", store.make_record(
        study="s", trial_key="k1", state=store.ERROR, config={}))
    assert store.read_markers(fs, "study") == {}
    running.remove(fs, "study/trials/k1")


def test_a_marker_that_cannot_be_written_does_not_fail_the_trial(tmp_path, caplog):
    (tmp_path / "file").write_text("not a folder")
    fs, root = store.filesystem(str(tmp_path / "file"))
    with caplog.at_level(logging.WARNING, logger="study.store.running"):
        marker = start(fs, store.join(root, "k1"))
        marker.beat({"epoch": 1})
    assert marker.failed
    assert len([r for r in caplog.records if "cannot be written" in r.getMessage()]) == 1


def test_an_unreadable_marker_is_ignored(tmp_path):
    fs, root = store.filesystem(str(tmp_path))
    (tmp_path / "trials" / "k1").mkdir(parents=True)
    (tmp_path / "trials" / "k1" / store.RUNNING_FILE).write_text('{"trial_key": "k1", "ep')
    (tmp_path / "trials" / "k2").mkdir()
    (tmp_path / "trials" / "k2" / store.RUNNING_FILE).write_text("[1, 2]")
    assert store.read_markers(fs, root) == {}


def test_the_record_wins_unless_a_later_attempt_started():
    marker = {"trial_key": "k", "started_at": at(10), "seen_at": at(12)}
    live = {"started_at": at(5)}
    assert running.judge(marker, None, live) == running.RUNNING
    assert running.judge(marker, {"ended_at": at(11)}, live) is None  # a last heartbeat raced
    assert running.judge(marker, {"ended_at": at(9)}, live) == running.RUNNING  # a retry
    assert running.judge({"trial_key": "k"}, {"ended_at": at(9)}, live) is None
    assert running.judge(marker, {"ended_at": at(9)}, None) is None  # its driver gone: as resume
    assert running.judge(marker, {"ended_at": at(9)}, {"started_at": at(30)}) is None


def test_a_marker_no_live_driver_wrote_is_unfinished():
    marker = {"trial_key": "k", "started_at": at(10), "seen_at": at(12)}
    assert running.judge(marker, None, None) == running.UNFINISHED  # no driver at all
    assert running.judge(marker, None, {"started_at": at(30)}) == running.UNFINISHED  # resumed
    assert running.judge(marker, None, {}) == running.RUNNING  # a holder that cannot be named
    assert running.judge({"trial_key": "k"}, None, {"started_at": at(30)}) == running.RUNNING


def test_what_status_says_of_a_marked_trial():
    marker = {"trial_key": "k", "node": "h/1.2.3.4", "attempt": 2, "started_at": at(1),
              "seen_at": at(3)}
    now = T0 + timedelta(minutes=3, seconds=42)
    assert running.describe(marker, running.RUNNING, now) == (
        "attempt 2 on h/1.2.3.4, started 2026-12-02 10:01:00 UTC, last seen 2026-12-02 "
        "10:03:00 UTC (42 s ago)")
    assert running.describe({"trial_key": "k"}, running.UNFINISHED, now) == (
        "driver gone; attempt ? on ?")
    assert running.last_seen([marker, {"seen_at": at(2)}, {}]) == "2026-12-02 10:03:00 UTC"
    assert running.last_seen([{}]) is None
    assert [running.ago(timedelta(seconds=s)) for s in (-3, 5, 119, 120, 7300, 2 * 86400)] == [
        "just now", "5 s ago", "119 s ago", "2 min ago", "2 h ago", "2 d ago"]
