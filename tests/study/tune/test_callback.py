"""study.tune.callback: the driver's progress lines and the records it writes for trials that
could not write their own (pruned; lost after their last retry) — on stand-ins for Tune's
trials (the hooks' public arguments), without starting Ray."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest

from study import store
from study.process_state import Driving, driving
from study.spec import load_spec
from study.tune import stopper, trainable
from study.tune.callback import StudyCallback


@dataclass
class FakeTrial:
    """What the callback reads of a Tune ``Trial``: its public attributes and ``get_error``."""

    trial_id: str
    config: dict
    status: str = "TERMINATED"
    checkpoint: object = None
    num_failures: int = 0
    error: str | None = None
    extra: dict = field(default_factory=dict)

    def get_error(self):
        return RuntimeError(self.error) if self.error else None


def trial_config(tmp_path):
    spec = load_spec("quickstart", {"study.storage": str(tmp_path / "s")})
    config = spec.plan()[0]
    context = trainable.study_context(name=spec.name, storage=spec.storage, git_rev="abc",
                                      trial_function="x:y", metric="val_loss", cpus_per_trial=1)
    return spec, {**config, trainable.CONTEXT_KEY: context}


def record_of(tmp_path, key):
    return json.loads((tmp_path / "s" / "trials" / key / "trial.json").read_text())


def test_a_trial_without_a_record_is_recorded_pruned_by_the_driver(tmp_path, capsys):
    spec, config = trial_config(tmp_path)
    key = config["trial_key"]
    trial = FakeTrial("t1", config)
    StudyCallback(3).on_trial_complete(0, [trial], trial)
    record = record_of(tmp_path, key)
    assert record["state"] == store.PRUNED and record["trial_key"] == key
    assert record["study"] == spec.name and record["git_rev"] == "abc"
    assert capsys.readouterr().out.split() == ["[1/3]", "PRUNED", key]


def test_a_lost_trial_is_recorded_as_error_with_its_reason(tmp_path, capsys):
    _, config = trial_config(tmp_path)
    key = config["trial_key"]
    other = FakeTrial("t0", {**config, "trial_key": "other"}, status="TERMINATED")
    trial = FakeTrial("t1", config, status="ERROR", error="node\n  lost")
    StudyCallback(12).on_trial_error(0, [other, trial], trial)
    record = record_of(tmp_path, key)
    assert record["state"] == store.ERROR and record["error"] == "node lost"
    out = capsys.readouterr().out
    assert out.startswith(f"[ 2/12] ERROR     {key}") and "error: node lost" in out


def test_a_trial_that_wrote_its_record_is_reported_as_it_wrote_it(tmp_path, capsys):
    spec, config = trial_config(tmp_path)
    key = config["trial_key"]
    flat = {k: v for k, v in config.items() if k not in (trainable.CONTEXT_KEY, "trial_key")}
    folder = str(tmp_path / "s" / "trials" / key)
    os.makedirs(folder)
    store.write_record(store.filesystem(folder)[0], folder, store.make_record(
        study=spec.name, trial_key=key, state=store.COMPLETED, config=flat,
        metrics={"best_val_loss": 1.5, "test_ll": -2.25, "epochs_run": 7}))
    trial = FakeTrial("t1", config)
    StudyCallback(1).on_trial_complete(0, [trial], trial)
    assert record_of(tmp_path, key)["state"] == store.COMPLETED  # not overwritten
    assert capsys.readouterr().out.strip() == (f"[1/1] COMPLETED {key}  best_val_loss 1.500  "
                                               f"test_ll -2.250  7 epochs")


@pytest.fixture
def stranded():
    """The ending of the experiment in course (as `study.tune.engine.run` sets it)."""
    with driving(Driving()) as experiment:
        yield experiment.ending


def test_a_stranded_studys_trials_are_left_unfinished(tmp_path, capsys, stranded):
    _, config = trial_config(tmp_path)
    clock = iter([0.0, 0.0, 5.0, 5.0]).__next__  # stranded at 0, for 5 s at the second look
    stopper_ = stopper.StrandedStopper({"CPU": 1.0}, grace_seconds=1.0, resources=dict,
                                       clock=clock)
    stopper_.stop_all()
    assert stopper_.stop_all() and stranded.stopped
    trial = FakeTrial("t1", config)
    StudyCallback(3).on_trial_complete(0, [trial], trial)
    assert not (tmp_path / "s" / "trials").exists()
    assert "unfinished" in capsys.readouterr().out


def test_a_retry_is_announced(tmp_path, capsys):
    _, config = trial_config(tmp_path)
    StudyCallback(3).on_trial_recover(0, [], FakeTrial("t1", config, num_failures=2))
    assert capsys.readouterr().out.strip() == (f"retrying {config['trial_key']} from its last "
                                               "checkpoint (failure 2)")
