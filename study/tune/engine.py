"""The engine of a study: `run` — Ray set up for the study (`study.tune.session`), the Tuner
assembled (`study.tune.tuner`) and run to its end, Ray shut down. The one entry of `study.run`
into `study.tune`.

Ray-free at the top (so `study.run` imports it at the top, and a dry run, ``status``,
``report`` and the repair code import no Ray): `study.tune.tuner`, which imports Ray, is
imported inside `run`, once the session has set Ray's environment (see `study.tune`).

Why the experiment ended is the caller's `study.ending.Ending`: written during ``fit`` by the
stopper, the searcher and the lease's thread, read by the caller once `run` has returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from study.ending import Ending
from study.process_state import Driving, driving
from study.spec import StudySpec
from study.tune.session import quiet_tune, session


@dataclass(frozen=True)
class Resumed:
    """A resumed study's Tuner: the trial records found (``records``), the keys to run again
    (``rerun``: trial_key → their COMPLETE Optuna trial's number; their records were lost),
    and whether to restart errored trials (``rerun_errored``)."""

    records: list[dict[str, Any]]
    rerun: dict[str, int] = field(default_factory=dict)
    rerun_errored: bool = False


@dataclass(frozen=True)
class Trials:
    """What the engine runs: the study's ``info`` (``study.json``: git revision, trial
    function, …), and ``resumed`` (None: a new study's Tuner)."""

    info: dict[str, Any]
    resumed: Resumed | None = None


@dataclass(frozen=True)
class Ran:
    """What `run` had: the trial slots of Ray's live nodes, and the trials run at once."""

    slots: int
    max_concurrent: int


Prepare = Callable[[int, int], Trials | None]


def run(spec: StudySpec, ending: Ending, prepare: Prepare, *, verbose: bool = False,
        quiet: bool = True) -> Ran:
    """Set up Ray for ``spec`` (an embedded Ray, or its cluster joined), then
    ``prepare(slots, max_concurrent)`` — the caller's work once the slots are known (a new
    study writes its files; a resume reconciles its Optuna study) — returns the trials to run,
    or None when nothing is left to run; run them with Ray Tune to the end of ``Tuner.fit``
    (a live view of the running trials unless ``quiet`` or ``verbose``). ``ending`` learns
    why the experiment ended (`study.ending.Ending`); Tune's errors are raised as they came.
    Ray started here is shut down when `run` returns, however it returns."""
    with session(spec, verbose) as slots:
        max_concurrent = spec.resources.max_concurrent or slots
        trials = prepare(slots, max_concurrent)
        if trials is None:
            return Ran(slots, max_concurrent)
        from study.tune import tuner  # Ray: imported only now that the session has set it up

        resumed = trials.resumed
        finished = {} if resumed is None else {r["trial_key"]: r["state"]
                                               for r in resumed.records}
        with quiet_tune(verbose, spec.storage), \
                driving(Driving(ending, quiet=quiet or verbose, finished=finished)):
            if resumed is None:
                made = tuner.new_tuner(spec, trials.info, max_concurrent, verbose)
            else:
                made = tuner.resumed_tuner(spec, trials.info, resumed.records, max_concurrent,
                                           verbose, resumed.rerun, resumed.rerun_errored)
            made.fit()
    return Ran(slots, max_concurrent)
