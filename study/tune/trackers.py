"""The driver's Tune logger callback that feeds the study's experiment trackers.

A subclass of Ray Tune's public ``LoggerCallback``: it runs in the driver, from the results
the trials already report to Tune, so a cluster's nodes need neither the tracker packages nor
network access to a tracking server. Each Tune event becomes a call of `study.watch.trackers`'
interface: trial start → ``start`` (with the trial's hyperparameters), an epoch result →
``log``, the final result (``trial_state``) and the trial's end → ``end``.

Why not Ray's own ``TBXLoggerCallback`` / ``MLflowLoggerCallback`` / ``WandbLoggerCallback``
(read in Ray 2.60): they name a run after Tune's trial (``<key>_<trial id>``, which changes
when a resumed study starts a new Tuner) and MLflow's opens a new run on every driver start,
so a resumed study would open new runs; TBX writes into Tune's trial folder and only at a
trial's end its HParams of every config key (our ``_study`` context included); W&B's starts
two Ray actors per trial. Ours key every run by the stable ``trial_key``.

Tune pickles the callback with the Tuner (``tuner.pkl``; a resumed study runs that copy), so
it holds only the ``[tracking]`` section, the study folder and name, and opens the trackers in
``setup``, when the experiment starts. A tracker that fails (a tracking server gone) is
reported once on stderr and dropped; the study goes on. Imported only once Ray runs
(`study.tune.tuner`).
"""

from __future__ import annotations

import sys
from typing import Any

from ray.tune.logger import LoggerCallback

from search_spaces import KEY_FIELD
from study.process_state import driven
from study.tune.trainable import CONTEXT_KEY, STATE_KEY
from study.watch import trackers, tracking


class TrackerCallback(LoggerCallback):
    """Tune events of every trial → the study's trackers (see the module docstring)."""

    def __init__(self, section: dict[str, Any], storage: str, study: str) -> None:
        super().__init__()
        self.section, self.storage, self.study = section, storage, study
        self.sinks: list[Any] = []
        self._final: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"section": self.section, "storage": self.storage, "study": self.study}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["section"], state["storage"], state["study"])  # type: ignore[misc]

    def setup(self, **info: Any) -> None:
        section = tracking.parse(self.section, _refuse)
        self.sinks = trackers.open_trackers(section, self.storage, self.study)

    def _each(self, what: str, *args: Any) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, what)(*args)
            except Exception as exc:  # the study goes on without this tracker
                self.sinks.remove(sink)
                print(f"gmmpvae: warning: {type(sink).__name__} stopped tracking "
                      f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                      file=sys.stderr, flush=True)

    @staticmethod
    def _key(trial: Any) -> str:
        return str(trial.config.get(KEY_FIELD, trial.trial_id))

    def log_trial_start(self, trial: Any) -> None:
        flat = {k: v for k, v in trial.config.items() if k not in (CONTEXT_KEY, KEY_FIELD)}
        self._each("start", self._key(trial), trackers.hparams(flat))

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        key = self._key(trial)
        if STATE_KEY in result:  # the final result: test metrics, written at the trial's end
            self._final[key] = dict(result)
            return
        if result.get("epoch") is None:
            return
        self._each("log", key, int(result["epoch"]), trackers.epoch_metrics(result))

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        key = self._key(trial)
        final = self._final.pop(key, None)
        if final is None and not failed and driven().ending.stopped:
            return  # unfinished, left for `gmmpvae resume`: the run stays open
        last = trial.last_result or {}
        final = final or {}
        state = final.get(STATE_KEY) or ("ERROR" if failed else "PRUNED")
        step = int(final.get("epochs_run") or last.get("epoch") or 0)
        self._each("end", key, step, trackers.final_metrics(final), state)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._each("close")


def _refuse(name: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{name}={value!r} is invalid: expected {accepted}")
