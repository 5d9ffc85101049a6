"""study.tune.trackers' callback on stand-ins (no Ray started, no tracker installed): a trial
that ends without its final result is closed PRUNED, unless the experiment is being stopped
(`study.ending.Ending`): then its tracker run stays open for `gmmpvae resume`."""

from __future__ import annotations

from types import SimpleNamespace

from study.process_state import Driving, driving
from study.tune.trackers import TrackerCallback


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def end(self, *args) -> None:
        self.calls.append(("end", *args))


def callback_with_sink() -> tuple[TrackerCallback, Sink]:
    cb, sink = TrackerCallback({}, "/nowhere", "s"), Sink()
    cb.sinks = [sink]
    return cb, sink


TRIAL = SimpleNamespace(config={"trial_key": "t1"}, trial_id="x", last_result={"epoch": 3})


def test_a_trial_without_its_final_result_is_ended_pruned():
    cb, sink = callback_with_sink()
    with driving(Driving()):
        cb.log_trial_end(TRIAL)
    assert [c[:2] for c in sink.calls] == [("end", "t1")] and sink.calls[0][-1] == "PRUNED"


def test_a_stopped_experiment_leaves_its_trials_runs_open():
    cb, sink = callback_with_sink()
    with driving(Driving()) as experiment:
        experiment.ending.strand()
        cb.log_trial_end(TRIAL)
        cb.log_trial_end(TRIAL, failed=True)  # a failure is ended whatever the experiment
    assert [c[-1] for c in sink.calls] == ["ERROR"]
