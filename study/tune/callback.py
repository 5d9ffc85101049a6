"""The driver's Tune callback: one line per finished trial, and the record of a trial that could
not write its own (stopped by the scheduler: PRUNED; lost after its last retry: ERROR).

Imported only once Ray runs (`study.tune.tuner`): it subclasses Ray Tune's public
``Callback``.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from search_spaces import KEY_FIELD
from study import store
from study.console import warn
from study.process_state import driven
from study.tune import trainable


class StudyCallback(Callback):
    """Progress lines ``[done/total] STATE key  best_val_loss …`` and driver-side records."""

    def __init__(self, total: int) -> None:
        self._total = total

    def _line(self, trials: list[Any], trial: Any, record: dict[str, Any] | None) -> None:
        done = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")}
        done.add(trial.trial_id)
        state = record["state"] if record else "?"
        parts = [f"[{len(done):>{len(str(self._total))}}/{self._total}] {state:<9} "
                 f"{trial.config.get(KEY_FIELD)}"]
        if record:
            if record.get("best_val_loss") is not None:
                parts.append(f"best_val_loss {record['best_val_loss']:.3f}")
            if record.get("test_ll") is not None:
                parts.append(f"test_ll {record['test_ll']:.3f}")
            if record.get("epochs_run") is not None:
                parts.append(f"{record['epochs_run']} epochs")
            if record.get("error"):
                parts.append(f"error: {record['error']}")
        print("  ".join(parts), flush=True)

    def _record(self, trial: Any) -> dict[str, Any] | None:
        folder = trainable.study_folder(trial.config[trainable.CONTEXT_KEY], warn)
        return store.read_record(folder.fs, folder.trial_dir(trial.config[KEY_FIELD]))

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any,
                         **info: Any) -> None:
        print(f"  retrying {trial.config.get(KEY_FIELD)} from its last checkpoint "
              f"(failure {trial.num_failures})", flush=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        record = self._record(trial)
        ending = driven().ending
        if record is None and ending.stopped:  # not pruned: left for `gmmpvae resume`
            print(f"  unfinished {trial.config.get(KEY_FIELD)} ({ending.why()})", flush=True)
            return
        if record is None:
            record = trainable.driver_record(trial.config, trial.checkpoint, store.PRUNED,
                                             announce=warn)
        self._line(trials, trial, record)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                       **info: Any) -> None:
        record = self._record(trial)
        if record is None:
            error = trial.get_error()
            text = " ".join(str(error).split())[:500] if error else "the trial failed"
            record = trainable.driver_record(trial.config, trial.checkpoint, store.ERROR, text,
                                             announce=warn)
        self._line(trials, trial, record)
