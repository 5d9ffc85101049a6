"""Why a study's experiment ended: `Ending`, one object per run or resume.

It is written by whoever learns why: the stopper when no node could hold a trial for the
stranded grace (`study.tune.stopper`), the searcher when the Optuna database stayed away past
the outage grace (`study.tune.searcher`), the lease's thread when the study's store did not
answer long enough to keep the lease (`study.store.lock`). Tune's objects read `stopped` to
leave the trials in flight unfinished (no PRUNED record, their Optuna trials RUNNING, adopted
by ``gmmpvae resume``). `study.run` reads it once, after ``Tuner.fit`` has returned:
`unreachable` is raised (exit status 3), else `stranded` goes into the `study.outcome.Outcome`.
An experiment that ran all its trials ends with nothing written here (`finished`). A user's
Ctrl-C is not an ending of this kind: it raises ``KeyboardInterrupt`` through ``fit``.

Ray-free; the driver's Tune objects find the ending of the experiment in course through
`study.process_state.driven` (Tune's restored copies were never handed it).
"""

from __future__ import annotations

import threading

from study.errors import Unreachable


class Ending:
    """Why the experiment ended (see the module docstring). Thread-safe: the lease's thread
    writes from outside Tune's loop. The first reason of each kind is kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stranded = False  # no node could hold a trial for ``[failure] stranded_grace``
        self.database: Unreachable | None = None  # the Optuna database stayed away
        self.lease: str | None = None  # why the driver's lease was lost (one line)

    def strand(self) -> None:
        """No node could hold a trial for the stranded grace: end the experiment."""
        self.stranded = True

    def give_up(self, error: Unreachable) -> None:
        """The Optuna database stayed away (``error``: its line): end the experiment."""
        with self._lock:
            self.database = self.database or error

    def lose_lease(self, why: str) -> None:
        """The driver's lease could not be kept (``why``: one line): end the experiment, so
        that it never runs on beside a second driver."""
        with self._lock:
            self.lease = self.lease or why

    @property
    def stopped(self) -> bool:
        """Whether the experiment is being ended early (the trials in flight left unfinished)."""
        return self.stranded or self.database is not None or self.lease is not None

    @property
    def server_away(self) -> bool:
        """Whether a server stayed away (the database, or the store under the lease)."""
        return self.database is not None or self.lease is not None

    @property
    def finished(self) -> bool:
        """Whether the experiment ran to its end (nothing stopped it)."""
        return not self.stopped

    def why(self) -> str:
        """Why the experiment was ended, in a few words (the unfinished trials' lines)."""
        if self.lease is not None:
            return "the study's store does not answer"
        if self.database is not None:
            return "the Optuna database does not answer"
        return "no node can hold it"

    def unreachable(self) -> Unreachable | None:
        """The error to raise once ``fit`` has returned, when a server stayed away: the
        database's (it says how to continue), else the lease's; None otherwise."""
        if self.database is not None:
            return self.database
        return None if self.lease is None else Unreachable(self.lease)
