"""study.tune.trainable.train_trial outside Ray, Tune's session calls stood in for (its public
``get_checkpoint``, ``report`` and ``Checkpoint``): an attempt marks itself running
(`study.store.running`) before its first epoch, refreshes the marker every epoch, and its record
removes it — also after a crash, whose retry marks itself again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parents[1]  # tests/study: fake_trials, test_runner

from test_runner import write_study  # noqa: E402

from study import store  # noqa: E402
from study.spec import load_spec  # noqa: E402
from study.store import running  # noqa: E402
from study.tune import trainable  # noqa: E402


def test_an_attempt_is_marked_running_until_its_record(tmp_path, monkeypatch):
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    path = write_study(tmp_path, "marked", fake={"FAKE_EPOCH_SECONDS": 0,
                                                 "FAKE_CRASH_MATCH": "-s",
                                                 "FAKE_CRASH_DIR": str(crash_dir)})
    spec = load_spec(str(path))
    config = spec.plan()[0]
    key = config["trial_key"]
    context = trainable.study_context(name=spec.name, storage=spec.storage, git_rev="abc",
                                      trial_function="fake_trials:fake_trial",
                                      metric="val_loss", cpus_per_trial=1)
    fs, root = store.filesystem(spec.storage)
    trial_dir = store.join(root, store.TRIALS_DIR, key)
    reports = []  # (the epoch reported, the marker then, the record then)

    def report(metrics, checkpoint=None):
        reports.append((metrics.get("epoch"), running.read(fs, trial_dir),
                        store.read_record(fs, trial_dir)))

    monkeypatch.setattr(trainable, "tune", SimpleNamespace(
        get_checkpoint=lambda: None, report=report,
        Checkpoint=SimpleNamespace(from_directory=lambda folder: folder)))
    with pytest.raises(RuntimeError, match="simulated crash"):  # the first attempt, at epoch 2
        trainable.train_trial({**config, trainable.CONTEXT_KEY: context})
    (epoch, marker, record), = reports
    assert epoch == 1 and record is None
    assert (marker["trial_key"], marker["attempt"], marker["epoch"]) == (key, 1, 1)
    assert marker["node"] and marker["best_val_loss"] is not None
    crashed = store.read_record(fs, trial_dir)
    assert crashed["state"] == store.ERROR and running.read(fs, trial_dir) is None

    reports.clear()  # Tune retries it (no checkpoint given: from scratch, after the ERROR)
    trainable.train_trial({**config, trainable.CONTEXT_KEY: context})
    # every epoch, then the final result
    assert [r[0] for r in reports] == [*range(1, config["max_epochs"] + 1), None]
    for epoch, marker, record in reports[:-1]:
        assert marker["epoch"] == epoch and record["state"] == store.ERROR
        assert running.judge(marker, record, {}) == running.RUNNING  # the retry, not the error
    _, marker, record = reports[-1]
    assert marker is None and record["state"] == store.COMPLETED
