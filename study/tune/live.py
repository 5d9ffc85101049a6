"""The driver's Tune callback that shows a study's live progress on the terminal.

It reads only what the trials already report to Tune (each epoch's ``epoch`` and
``best_val_loss``, the final ``trial_state``) into `study.watch.live_view.LiveState`, and redraws
the block from the driver's loop (``on_step_end``) when it is due: twice a second on a TTY,
every 30 seconds otherwise. It runs before `study.tune.callback.StudyCallback` in the callback
list and erases its block before a trial's end, failure or retry, so those lines print
where it was and it is redrawn below them. Imported only once Ray runs (`study.tune.tuner`,
`study.run`).

Tune pickles a Tuner's callbacks into ``tuner.pkl`` and a restored experiment (``gmmpvae
resume``) runs those: so the callback holds only the study's name and size, and what the
driver of *this* run wants (``--quiet``, the trials finished before it) is read in ``setup``,
when the experiment starts, from the experiment in course (`study.process_state.driven`, set
around ``fit()`` by `study.tune.engine.run`).
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from search_spaces import KEY_FIELD
from study.process_state import driven
from study.tune.trainable import STATE_KEY
from study.watch.live_view import LiveState, Screen, render


class LiveProgress(Callback):
    """Live progress of a study's trials (see the module docstring)."""

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total = name, total
        self.clock: Any = time.monotonic
        self.active = False
        self.state = LiveState(name, total, 0.0)
        self.screen = Screen(tty=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "total": self.total}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"], state["total"])  # type: ignore[misc]

    def setup(self, **info: Any) -> None:
        options = driven()
        self.active = not options.quiet
        self.state = LiveState(self.name, self.total, self.clock(),
                               finished=dict(options.finished))
        self.screen = options.screen or Screen()

    @staticmethod
    def _key(trial: Any) -> str:
        return str(trial.config.get(KEY_FIELD, trial.trial_id))

    @staticmethod
    def _max_epochs(trial: Any) -> int:
        return int(trial.config.get("max_epochs") or 0)

    def draw(self, force: bool = False) -> None:
        if not self.active:
            return
        now = self.clock()
        if force or self.screen.due(now):
            self.screen.show(render(self.state, now), now)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.state.started_trial(self._key(trial), self._max_epochs(trial))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                        result: dict[str, Any], **info: Any) -> None:
        key = self._key(trial)
        if STATE_KEY in result:
            self.state.ended(key, str(result[STATE_KEY]))
            return
        if result.get("epoch") is None:
            return
        self.state.result(key, self._max_epochs(trial), int(result["epoch"]),
                          result.get("best_val_loss"), result.get("seconds"), self.clock())

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.draw()

    def _ended(self, trial: Any, state: str) -> None:
        key = self._key(trial)
        if key in self.state.running:  # no final result: pruned by the scheduler, or lost
            self.state.ended(key, state)
        self.screen.clear()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        if driven().ending.stopped:  # unfinished, left for resume: neither done nor failed
            self.state.running.pop(self._key(trial), None)
            self.screen.clear()
            return
        self._ended(trial, "PRUNED")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                       **info: Any) -> None:
        self._ended(trial, "ERROR")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any,
                         **info: Any) -> None:
        self.screen.clear()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.screen.clear()
