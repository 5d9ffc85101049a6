"""End a study whose trials can no longer be placed (every worker node gone) after a grace
period, instead of waiting forever behind Tune's "ignore if autoscaling" warning.

A Ray Tune `Stopper` (public API): Tune asks ``stop_all()`` at every step of its loop. The
cluster is *stranded* while its total resources (``ray.cluster_resources()``, alive nodes only)
cannot hold one trial; after ``grace_seconds`` of that, ``stop_all`` says yes, Tune ends the
experiment, and the runner records the unfinished trials, consolidates the results and prints
how to resume. An autoscaling cluster that brings nodes back within the grace loses nothing.
The same stopper ends the experiment when the searcher gave up on the Optuna database
(`give_up`), and when the driver lost its lease (`study.store.lock.lost`: the object store did
not answer for ``outage_grace``), so that it never runs on beside a second driver.
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


# The `Unreachable` the searcher gave up with (the Optuna database stayed away past the outage
# grace): Tune cannot be told it by raising (it logs a searcher's exception with a traceback,
# or fails the trial), so the searcher hands it here, every stopper's ``stop_all`` ends the
# experiment, and the runner raises it once ``fit`` has returned (`study.tune.tuner.stranded`).
_GAVE_UP: list[Exception] = []


def stopped() -> bool:
    """Whether the current experiment was ended by a `StrandedStopper` (or an outage)."""
    return _STOPPED.is_set()


def give_up(error: Exception) -> None:
    """End the experiment for ``error`` (an `Unreachable`) at Tune's next step; the trials in
    flight are left unfinished, as for a stranded study."""
    if not _GAVE_UP:
        _GAVE_UP.append(error)
    _STOPPED.set()


def gave_up() -> Exception | None:
    """The error `give_up` was called with in this experiment, else None."""
    return _GAVE_UP[0] if _GAVE_UP else None


def why() -> str:
    """Why the experiment was ended, in a few words (for the unfinished trials' lines)."""
    if lock.lost():
        return "the study's store does not answer"
    return "the Optuna database does not answer" if _GAVE_UP else "no node can hold it"


def reset() -> None:
    """Forget a stop: called by the runner when its experiment has ended (and before)."""
    _STOPPED.clear()
    _GAVE_UP.clear()


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
        if _GAVE_UP or lock.lost():  # a server stayed away (the Optuna database, the store)
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
