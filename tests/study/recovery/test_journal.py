"""Torn Optuna journals: a torn last line is cut off (and Optuna then reads and appends to the
journal as before); a broken line elsewhere is named, not changed."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from study.recovery.journal import JournalDamagedError, repair_journal


def _journal(tmp_path, n_trials=3):
    path = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))
    for i in range(n_trials):
        trial = study.ask()
        trial.set_user_attr("trial_key", f"k{i}")
        study.tell(trial, float(i))
    return path


def _states(path):
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))
    return [t.state.name for t in study.get_trials()]


def test_whole_journal_is_left_alone(tmp_path):
    path = _journal(tmp_path)
    before = open(path, "rb").read()
    assert repair_journal(path) is None
    assert open(path, "rb").read() == before
    assert repair_journal(str(tmp_path / "missing.journal")) is None


@pytest.mark.parametrize("cut", [1, 7, 25])
def test_torn_last_line_is_cut_and_optuna_keeps_working(tmp_path, cut):
    path = _journal(tmp_path)
    data = open(path, "rb").read()
    whole = data[: data.rstrip(b"\n").rfind(b"\n") + 1]  # the journal without its last entry
    last = data[len(whole):]
    with open(path, "wb") as f:
        f.write(whole + last[:cut])  # a crash mid-append
    message = repair_journal(path)
    assert message is not None and "\n" not in message and path in message
    assert open(path, "rb").read() == whole
    torn = [p for p in tmp_path.iterdir() if p.name.startswith("optuna.journal.torn-")]
    assert len(torn) == 1 and torn[0].read_bytes() == last[:cut]
    # The last entry (the third trial's COMPLETE) is gone; Optuna reads and appends again.
    assert _states(path) == ["COMPLETE", "COMPLETE", "RUNNING"]
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))
    study.tell(2, 2.0)
    assert _states(path) == ["COMPLETE"] * 3
    assert repair_journal(path) is None


def test_unrepaired_torn_line_breaks_optuna_after_the_next_append(tmp_path):
    """Why the repair exists (and a canary: fails if Optuna starts repairing this itself)."""
    path = _journal(tmp_path)
    with open(path, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "study_id": 0, "datetime_st')
    storage = JournalStorage(JournalFileBackend(path))
    study = optuna.load_study(study_name="s", storage=storage)
    # Optuna 5.0: the new trial's line lands behind the torn bytes, so its own replay loses the
    # trial (AttributeError inside ask); a later read fails on the broken middle line.
    with pytest.raises((ValueError, AttributeError)):
        study.ask()
        optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))


@pytest.mark.parametrize("garbage", [b"\xff\xfe not text\n", b"{broken json\n", b"[1, 2]\n"])
def test_broken_middle_line_is_named_and_nothing_changes(tmp_path, garbage):
    path = _journal(tmp_path)
    lines = open(path, "rb").read().split(b"\n")
    damaged = b"\n".join(lines[:2]) + b"\n" + garbage + b"\n".join(lines[2:])
    with open(path, "wb") as f:
        f.write(damaged)
    with pytest.raises(JournalDamagedError) as err:
        repair_journal(path)
    assert "\n" not in str(err.value)
    assert f"{path} is damaged at line 3" in str(err.value)
    assert open(path, "rb").read() == damaged
