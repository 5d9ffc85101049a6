"""The study lock: one live driver per study folder; a dead driver's lock is free; status
reads the holder without taking anything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from study.store.lock import (
    LEASE_FILE,
    LOCK_FILE,
    StudyLockedError,
    current_holder,
    lease_is_live,
    study_lock,
)

LOCAL = pafs.LocalFileSystem()
REPO = Path(__file__).resolve().parents[3]


def _hold_in_child(folder: Path, *, lease: bool = False) -> subprocess.Popen:
    """A child process that takes the lock, prints 'held' and sleeps until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        import pyarrow.fs as pafs
        from study.store.lock import study_lock
        with study_lock(pafs.LocalFileSystem(), {str(folder)!r}, "s", force_lease={lease},
                        lease_seconds=30, settle_seconds=0):
            print("held", flush=True)
            time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             start_new_session=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def _kill(child: subprocess.Popen) -> None:
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)


def test_second_driver_in_same_process_is_refused_with_one_line(tmp_path):
    with study_lock(LOCAL, str(tmp_path), "studies/x") as holder:
        assert holder["pid"] == os.getpid()
        with pytest.raises(StudyLockedError) as err:
            with study_lock(LOCAL, str(tmp_path), "studies/x"):
                pass
        message = str(err.value)
        assert "\n" not in message
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert "studies/x" in message and LOCK_FILE in message
        assert current_holder(LOCAL, str(tmp_path))["pid"] == os.getpid()
    assert current_holder(LOCAL, str(tmp_path)) is None
    with study_lock(LOCAL, str(tmp_path), "studies/x"):  # released: can be taken again
        pass


def test_other_process_is_refused_and_dead_driver_lock_is_taken_over(tmp_path):
    child = _hold_in_child(tmp_path)
    try:
        with pytest.raises(StudyLockedError, match=f"pid {child.pid} "):
            with study_lock(LOCAL, str(tmp_path), "s"):
                pass
        assert current_holder(LOCAL, str(tmp_path))["pid"] == child.pid
    finally:
        _kill(child)  # SIGKILL: no clean-up ran, the file still names the dead driver
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == child.pid
    assert current_holder(LOCAL, str(tmp_path)) is None
    with study_lock(LOCAL, str(tmp_path), "s") as holder:
        assert holder["pid"] == os.getpid()


def test_status_never_creates_the_lock_file(tmp_path):
    assert current_holder(LOCAL, str(tmp_path / "missing")) is None
    assert not (tmp_path / "missing").exists()


def test_lease_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    child = _hold_in_child(tmp_path, lease=True)
    try:
        with pytest.raises(StudyLockedError, match=f"pid {child.pid} "):
            with study_lock(LOCAL, str(tmp_path), "s", force_lease=True, settle_seconds=0):
                pass
    finally:
        _kill(child)
    # Same host, dead PID: the lease no longer binds, although it has not expired.
    stale = json.loads((tmp_path / LEASE_FILE).read_text())
    assert stale["renewed_at"] + stale["lease_seconds"] > time.time()
    with study_lock(LOCAL, str(tmp_path), "s", force_lease=True, settle_seconds=0) as holder:
        assert json.loads((tmp_path / LEASE_FILE).read_text())["token"] == holder["token"]
    assert not (tmp_path / LEASE_FILE).exists()  # released


def test_lease_of_another_host_binds_until_it_expires(tmp_path):
    other = {"host": "node-b", "pid": 1, "token": "t", "renewed_at": time.time(),
             "lease_seconds": 60, "started_at": "2026-11-29T10:00:00+00:00"}
    (tmp_path / LEASE_FILE).write_text(json.dumps(other))
    with pytest.raises(StudyLockedError, match="pid 1 on node-b since 2026-11-29"):
        with study_lock(LOCAL, str(tmp_path), "s", force_lease=True, settle_seconds=0):
            pass
    assert lease_is_live(other)
    assert not lease_is_live({**other, "renewed_at": time.time() - 61})
    assert not lease_is_live({"host": "node-b"})  # unreadable lease: nobody renews it
    (tmp_path / LEASE_FILE).write_text(json.dumps({**other, "renewed_at": time.time() - 61}))
    with study_lock(LOCAL, str(tmp_path), "s", force_lease=True, settle_seconds=0):
        pass


def test_lease_is_renewed_while_held(tmp_path):
    with study_lock(LOCAL, str(tmp_path), "s", force_lease=True, settle_seconds=0,
                    lease_seconds=0.3) as holder:
        first = json.loads((tmp_path / LEASE_FILE).read_text())["renewed_at"]
        deadline = time.time() + 10
        while time.time() < deadline:
            current = json.loads((tmp_path / LEASE_FILE).read_text())
            if current["renewed_at"] > first:
                break
            time.sleep(0.05)
        assert current["renewed_at"] > first and current["token"] == holder["token"]


def test_lost_race_is_refused(tmp_path, monkeypatch):
    """Two drivers wrote the lease at once: the one whose token is not read back stops."""
    import study.store.lock as lock

    real_sleep = time.sleep

    def rival_writes(seconds):
        rival = {"host": "node-b", "pid": 2, "token": "rival", "renewed_at": time.time(),
                 "lease_seconds": 60}
        (tmp_path / LEASE_FILE).write_text(json.dumps(rival))
        real_sleep(0)

    monkeypatch.setattr(lock.time, "sleep", rival_writes)
    with pytest.raises(StudyLockedError, match="pid 2 on node-b"):
        with study_lock(LOCAL, str(tmp_path), "s", force_lease=True, settle_seconds=1):
            pass
