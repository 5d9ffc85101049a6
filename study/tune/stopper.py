"""End a study whose trials can no longer be placed (every worker node gone) after a grace
period, instead of waiting forever behind Tune's "ignore if autoscaling" warning.

A Ray Tune `Stopper` (public API): Tune asks ``stop_all()`` at every step of its loop. The
cluster is *stranded* while its total resources (``ray.cluster_resources()``, alive nodes only)
cannot hold one trial; after ``grace_seconds`` of that, ``stop_all`` says yes, Tune ends the
experiment, and the runner records the unfinished trials, consolidates the results and prints
how to resume. An autoscaling cluster that brings nodes back within the grace loses nothing.
The same stop ends a study whose driver lost its lease (`study.store.lock.lost`: the object
store did not answer for ``outage_grace``), so that it never runs on beside a second driver.
Imported only by `study.tune.tuner` (it imports Ray).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import ray
from ray.tune import Stopper

from study.store import lock

DEFAULT_GRACE_SECONDS = 600.0
# Set when a stopper of this driver ended the experiment. Tune then stops the remaining trials
# through the same hooks as a finished one (searcher and callbacks' on_trial_complete): they
# read this to leave those trials unfinished (no PRUNED record, Optuna trial left RUNNING, to be
# adopted by `gmmpvae resume`). Process-wide on purpose: a stopper restored from tuner.pkl
# is a copy the runner never sees.
_STOPPED = threading.Event()


def stopped() -> bool:
    """Whether the current experiment was ended by a `StrandedStopper`."""
    return _STOPPED.is_set()


def why() -> str:
    """Why the experiment was ended, in a few words (for the unfinished trials' lines)."""
    return "the study's store does not answer" if lock.lost() else "no node can hold it"


def reset() -> None:
    """Forget a stop: called by the runner when its experiment has ended (and before)."""
    _STOPPED.clear()


def can_place(need: dict[str, float], resources: dict[str, float]) -> bool:
    """Whether a cluster with these total resources can hold one trial needing ``need``."""
    return all(resources.get(name, 0.0) + 1e-9 >= amount
               for name, amount in need.items() if amount > 0)


class StrandedStopper(Stopper):
    """``stop_all`` once no trial could be placed for ``grace_seconds`` in a row."""

    def __init__(self, need: dict[str, float], grace_seconds: float = DEFAULT_GRACE_SECONDS, *,
                 resources: Callable[[], dict[str, float]] = ray.cluster_resources,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.need = {k: float(v) for k, v in need.items()}
        self.grace_seconds = float(grace_seconds)
        self._resources = resources
        self._clock = clock
        self.stranded_since: float | None = None
        self.stopped = False
        self.check_interval = min(1.0, self.grace_seconds / 10)
        self._checked: float | None = None
        _STOPPED.clear()  # a new experiment of this driver

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False  # never stops a single trial

    def stop_all(self) -> bool:
        if lock.lost():  # the driver's lease could not be kept (an outage of the store)
            self.stopped = True
            _STOPPED.set()
            return True
        # Tune asks at every step of its loop: ask the cluster at most once per second.
        now = self._clock()
        if self._checked is not None and now - self._checked < self.check_interval:
            return self.stopped
        self._checked = now
        if can_place(self.need, self._resources()):
            self.stranded_since = None
            return False
        now = self._clock()
        if self.stranded_since is None:
            self.stranded_since = now
        self.stopped = now - self.stranded_since >= self.grace_seconds
        if self.stopped:
            _STOPPED.set()
        return self.stopped

    def __setstate__(self, state: dict) -> None:  # restored from tuner.pkl by a resume
        self.__dict__.update(state)
        self.stranded_since, self.stopped, self._checked = None, False, None
        _STOPPED.clear()
