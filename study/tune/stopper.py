"""End a study whose trials can no longer be placed (every worker node gone) after a grace
period, instead of waiting forever behind Tune's "ignore if autoscaling" warning.

A Ray Tune `Stopper` (public API): Tune asks ``stop_all()`` at every step of its loop. The
cluster is *stranded* while its total resources (``ray.cluster_resources()``, alive nodes only)
cannot hold one trial; after ``grace_seconds`` of that, ``stop_all`` says yes, Tune ends the
experiment, and the runner records the unfinished trials, consolidates the results and prints
how to resume. An autoscaling cluster that brings nodes back within the grace loses nothing.
The same stopper ends the experiment when a server stayed away (the searcher gave up on the
Optuna database, or the driver lost its lease: `study.ending.Ending`), so that it never runs on
beside a second driver; it records a stranded ending there. Imported only by
`study.tune.tuner` (it imports Ray).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import ray
from ray.tune import Stopper

from study.process_state import driven

DEFAULT_GRACE_SECONDS = 600.0


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

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False  # never stops a single trial

    def stop_all(self) -> bool:
        ending = driven().ending  # (a restored stopper was never handed this run's)
        if ending.server_away:  # the Optuna database, or the store under the lease
            self.stopped = True
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
            ending.strand()
        return self.stopped

    def __setstate__(self, state: dict) -> None:  # restored from tuner.pkl by a resume
        self.__dict__.update(state)
        self.stranded_since, self.stopped, self._checked = None, False, None
