"""Optuna chooses a study's trials, Ray Tune runs them: `StudySearcher`, a Tune ``Searcher`` over
Optuna's ask-and-tell interface, public APIs only.

The Optuna study (the study folder's ``optuna.journal``, or the spec's RDB URL) is the source
of truth; the searcher holds nothing Optuna does not. Public interfaces used —
Ray Tune: ``Searcher`` (``suggest``, ``on_trial_result``, ``on_trial_complete``, ``save``,
``restore``; ``Searcher.FINISHED``). Optuna: ``create_study(load_if_exists=True)``,
``Study.enqueue_trial(params, user_attrs)``, ``Study.ask``, ``Trial.suggest_categorical``,
``Trial.set_user_attr``, ``Trial.report``, ``Study.tell(trial_number, …, skip_if_finished=True)``,
``Study.get_trials(states=…)``, ``FrozenTrial.number/params/user_attrs/state``,
``trial.FixedTrial``, ``trial.create_trial`` + ``Study.add_trial``.

- **Grids**: every planned trial is enqueued once, with its hyperparameters as Optuna
  parameters (categorical over the values the plan gives them: the ones that vary — M, K, the
  π components ``pi[0]`` …, arch, … — plus user attributes for the fixed ones) and its
  ``trial_key`` as a user attribute. A missing key is enqueued again whenever a searcher is
  built (a crash half-way through the enqueuing), so every key is planned exactly once;
  ``suggest`` asks the next waiting one and returns ``Searcher.FINISHED`` when none waits —
  known from the searcher's own count (the waiting trials read once at its start, minus its
  asks), not from a read of every waiting trial per call (issue 17: a 300-key grid on
  PostgreSQL).
- **Open spaces**: define-by-run, the space's own ``trial.suggest_*`` on an asked trial; a
  configuration drawn twice is told FAIL (user attribute ``duplicate_of``, not counted) and
  redrawn; ``budget`` counted trials, then FINISHED.
- **Lost records** (``recipe["rerun"]``: keys Optuna calls COMPLETE whose trial record was
  lost or torn, `study.recovery`): run again *outside* Optuna — ``suggest`` hands out their
  configurations first (the plan's, or the COMPLETE trial's parameters for an open space), no
  trial is asked or told for them — so the study keeps one COMPLETE Optuna trial per key (its
  first completion's value) on the journal and on an RDB alike: Optuna cannot change a
  finished trial, and a second COMPLETE trial would count the key twice for the sampler and
  the dashboard. Which reruns were handed out is saved with Tune's experiment state.
- **Crashes**: a RUNNING Optuna trial that no Tune trial owns (asked by a driver that died
  before Tune saved its state) is *adopted* by the next Tune trial: told under its number when
  it ends, so no key is lost or run twice. Orphans come from earlier drivers only, so they
  are found once, when the searcher starts (and Tune's restored trials keep theirs,
  ``restore``) — and again after a failed call (below). The Tune-trial → Optuna-number map is
  all that ``save`` writes; the searcher pickles as its recipe (Tune puts it into
  ``tuner.pkl``).
- **Database outages** (`study.optuna_outage.database_patience`): every Optuna call is
  retried while the
  database is away, for at most ``[failure] outage_grace``. A call cut in flight is safe to
  repeat (``tell(skip_if_finished=True)``, ``report``, ``suggest_*`` rewrite the same rows)
  except ``ask``, whose lost trial is RUNNING and nobody's: after a failed call the searcher
  reads the unfinished trials again and adopts it (an asked trial whose parameters were not
  all recorded is finished by the retry, ``_half``). A trial is marked told only once
  ``tell`` returned. Past the grace the searcher does not raise into Tune (Tune logs a
  searcher's exception with a traceback, or fails the trial): it records the `Unreachable` in
  the experiment's `study.ending.Ending` (``give_up``), the stopper ends the experiment leaving
  the trials in flight unfinished, and the runner raises it (one line, exit status 3;
  ``gmmpvae resume``).
- Optuna's own INFO lines ("Trial 3 finished …") are silenced around each call
  (`study.optuna_study.quiet_optuna`), not process-wide.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from models.checkpoint import atomic_write_text
from search_spaces import KEY_FIELD
from study.errors import Unreachable
from study.optuna_outage import database_patience
from study.optuna_study import (
    DUPLICATE_ATTR,
    counted,
    finite,
    grid_distributions,
    hyperparameters,
    make_sampler,
    open_study,
    quiet_optuna,
)
from study.process_state import driven
from study.spec import StudySpec
from study.store import COMPLETED, ERROR
from study.tune.trainable import STATE_KEY

MAX_DUPLICATE_DRAWS = 100  # open searches: draws of an already-run configuration in a row
T = TypeVar("T")

def _rebuild(recipe: dict[str, Any]) -> StudySearcher:
    return StudySearcher(recipe)


class StudySearcher(Searcher):
    """A study's trials from its Optuna study (see the module docstring). ``recipe``:
    ``{"spec": StudySpec.to_dict(), "budget": trials}``."""

    def __init__(self, recipe: dict[str, Any], spec: StudySpec | None = None) -> None:
        # ``spec``: the validated spec of this driver; rebuilt (and validated) from the recipe
        # only when Tune unpickles the searcher from tuner.pkl.
        spec = spec if spec is not None else StudySpec.from_dict(recipe["spec"])
        super().__init__(metric=spec.search.metric, mode=spec.search.mode)
        self._recipe, self._spec, self._budget = recipe, spec, int(recipe["budget"])
        plan = spec.plan()
        self._plan = None if plan is None else {t[KEY_FIELD]: t for t in plan}
        self._dists = grid_distributions(plan) if plan is not None else {}
        self._numbers: dict[str, int] = {}  # Tune trial id → Optuna trial number
        self._asked: dict[str, optuna.trial.Trial] = {}  # trials asked here (for report)
        self._told: set[str] = set()
        # trial_key → number of its COMPLETE Optuna trial whose record was lost: run it again,
        # outside Optuna (see the module docstring); the keys handed out so far
        self._rerun: dict[str, int] = dict(recipe.get("rerun", {}))
        self._rerun_served: set[str] = set()
        # What `_look` saw of the unfinished trials: RUNNING ones nobody here owns (to adopt),
        # and how many wait (a grid; counted down by each ask). ``_stale``: a call failed, so
        # an ask cut in flight may have left a RUNNING trial we never saw: look again.
        self._orphans: list[optuna.trial.FrozenTrial] = []
        self._waiting = 0
        self._stale = False
        # (Tune trial id, trial) asked by a suggest whose next step failed: the retry goes on
        # with it instead of asking another
        self._half: tuple[str, optuna.trial.Trial] | None = None
        self._study = self._patient(lambda: open_study(spec, make_sampler(spec)))
        if self._plan is not None:
            self._patient(self._enqueue_missing)
        self._patient(self._look)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _rebuild, (self._recipe,)

    def _patient(self, call: Callable[[], T]) -> T:
        """``call()`` retried while the Optuna database is away (`study.optuna_outage`)."""
        return database_patience(self._spec).call(call, on_wait=self._mark_stale)

    def _mark_stale(self, _error: BaseException) -> None:
        self._stale = True

    # -- the plan
    def _trials(self, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
        return self._study.get_trials(deepcopy=False, states=states or None)

    def _enqueue_missing(self) -> None:
        """Enqueue every planned key that has no Optuna trial yet (all of them, first time)."""
        trials = self._trials()
        present = {t.user_attrs.get(KEY_FIELD) for t in trials if counted(t)}
        assert self._plan is not None
        with quiet_optuna():
            for key, config in self._plan.items():
                if key in present:
                    continue
                hp = hyperparameters(config)
                params = {n: v for n, v in hp.items() if n in self._dists}
                fixed = {n: v for n, v in hp.items() if n not in self._dists}
                self._study.enqueue_trial(params, user_attrs={KEY_FIELD: key, **fixed})

    def _look(self) -> None:
        """One read of the unfinished trials (at the start, and after a failed call): the
        orphans — RUNNING, owned by no Tune trial here, so asked by an earlier driver or by a
        call of ours cut in flight — and the number of WAITING ones."""
        unfinished = self._trials(TrialState.WAITING, TrialState.RUNNING)
        owned = set(self._numbers.values())
        if self._half is not None:
            owned.add(self._half[1].number)
        self._orphans = [t for t in unfinished
                         if t.state == TrialState.RUNNING and t.number not in owned]
        self._waiting = sum(t.state == TrialState.WAITING for t in unfinished)
        self._stale = False

    # -- choosing trials
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        ending = driven().ending
        if ending.stopped:
            return None  # the experiment is ending (a server stayed away, or stranded)
        try:
            return self._patient(lambda: self._suggest_once(trial_id))
        except Unreachable as exc:
            ending.give_up(exc)  # Tune ends the experiment; the runner raises it
            return None

    def _suggest_once(self, trial_id: str) -> dict[str, Any] | str | None:
        """One attempt of `suggest` (repeated after a transient error: see `_half`)."""
        if self._stale:
            self._look()
        half = self._half
        if half is not None and half[0] == trial_id:
            trial = half[1]  # asked by the attempt cut in flight
        else:
            if half is not None:  # another Tune trial's: nobody's now, an orphan
                self._half, self._stale = None, True
                self._look()
            orphan = self._adopt(trial_id)
            if orphan is not None:
                return orphan
            rerun = self._next_rerun()
            if rerun is not None:
                return rerun  # no Optuna number: nothing is told for it
            if self._plan is None:
                return self._suggest_open(trial_id, None)
            if self._waiting <= 0:
                return Searcher.FINISHED
            with quiet_optuna():
                trial = self._study.ask()
            self._half, self._waiting = (trial_id, trial), self._waiting - 1
        if self._plan is None:
            return self._suggest_open(trial_id, trial)
        return self._record_grid(trial_id, trial)

    def _adopt(self, trial_id: str) -> dict[str, Any] | None:
        """The config of the next orphan (now owned by ``trial_id``), or None."""
        while self._orphans:
            orphan = self._orphans[0]
            config = self._config_of(orphan)
            self._orphans.pop(0)
            if config is not None:
                self._numbers[trial_id] = orphan.number
                return config
        return None

    def _next_rerun(self) -> dict[str, Any] | None:
        """The configuration of the next lost-record key to run again, or None."""
        for key, number in sorted(self._rerun.items()):
            if key in self._rerun_served:
                continue
            config = self._rerun_config(key, number)
            self._rerun_served.add(key)
            if config is not None:
                return config
        return None

    def _rerun_config(self, key: str, number: int) -> dict[str, Any] | None:
        if self._plan is not None and key in self._plan:
            return dict(self._plan[key])
        old = next((t for t in self._trials(TrialState.COMPLETE) if t.number == number), None)
        if old is not None and old.user_attrs.get(KEY_FIELD) == key:
            try:
                config = self._spec.suggest(optuna.trial.FixedTrial(old.params, number))
            except ValueError:
                return None
            if config[KEY_FIELD] == key:
                return config
        return None

    def _config_of(self, trial: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
        """The config an orphan was asked for; None (and the orphan failed) when it was never
        assigned one (its driver died between asking and choosing)."""
        key = trial.user_attrs.get(KEY_FIELD)
        if self._plan is not None and key in self._plan:
            return dict(self._plan[key])
        if self._plan is None and key is not None:
            try:
                config = self._spec.suggest(optuna.trial.FixedTrial(trial.params, trial.number))
            except ValueError:
                config = None
            if config is not None and config[KEY_FIELD] == key:
                return config
        with quiet_optuna():
            self._study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        return None

    def _record_grid(self, trial_id: str, trial: optuna.trial.Trial
                     ) -> dict[str, Any] | str | None:
        """An asked grid trial's planned config, its enqueued values recorded as its
        parameters (again after a cut: ``suggest_*`` of a recorded parameter rewrites it)."""
        key = trial.user_attrs.get(KEY_FIELD)
        if key not in self._plan:  # type: ignore[operator]
            # Nothing was waiting after all (a count gone wrong): not a planned trial.
            with quiet_optuna():
                self._study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            self._half = None
            self._look()
            return self._suggest_once(trial_id)
        config = dict(self._plan[key])  # type: ignore[index]
        with quiet_optuna():
            for name in hyperparameters(config).keys() & self._dists.keys():
                trial.suggest_categorical(name, self._dists[name].choices)
        self._half = None
        self._numbers[trial_id], self._asked[trial_id] = trial.number, trial
        return config

    def _suggest_open(self, trial_id: str, trial: optuna.trial.Trial | None
                      ) -> dict[str, Any] | str:
        """Define-by-run: ask (unless ``trial``: asked by an attempt cut in flight), draw, and
        fail a configuration drawn before (not counted), then draw again."""
        mine = None if trial is None else trial.number
        trials = [t for t in self._trials() if counted(t) and t.number != mine]
        keys = {t.user_attrs.get(KEY_FIELD) for t in trials}
        if trial is None and len(trials) >= self._budget:
            return Searcher.FINISHED
        for _ in range(MAX_DUPLICATE_DRAWS):
            with quiet_optuna():
                if trial is None:
                    trial = self._study.ask()
                    self._half = (trial_id, trial)
                config = self._spec.suggest(trial)
                key = config[KEY_FIELD]
                if key in keys:
                    # Drawn before: fail this draw (not counted) and draw again.
                    self._half = None  # (cut from here on: an orphan with no key, failed)
                    trial.set_user_attr(DUPLICATE_ATTR, key)
                    self._study.tell(trial.number, state=TrialState.FAIL,
                                     skip_if_finished=True)
                    trial = None
                    continue
                for name, value in hyperparameters(config).items():
                    if name not in trial.params:
                        trial.set_user_attr(name, value)
                trial.set_user_attr(KEY_FIELD, key)  # last: the trial now counts
            self._half = None
            self._numbers[trial_id], self._asked[trial_id] = trial.number, trial
            return config
        return Searcher.FINISHED

    # -- results
    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Intermediate values for optuna-dashboard, for the trials asked by this driver."""
        trial = self._asked.get(trial_id)
        value, step = result.get(self.metric), result.get("epoch")
        if (trial is None or trial_id in self._told or STATE_KEY in result or step is None
                or not finite(value) or driven().ending.stopped):
            return
        try:
            self._patient(lambda: _report(trial, float(value), int(step)))
        except Unreachable as exc:
            driven().ending.give_up(exc)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        number = self._numbers.get(trial_id)
        if number is None or trial_id in self._told or driven().ending.stopped:
            return  # (a stranded study's trials stay unfinished: adopted by the next resume)
        result = result or {}
        outcome, value = result.get(STATE_KEY), result.get(self.metric)
        if error or outcome == ERROR or (outcome == COMPLETED and not finite(value)):
            told: dict[str, Any] = {"state": TrialState.FAIL}
        elif outcome == COMPLETED:
            told = {"values": float(value)}
        else:  # stopped early by the scheduler
            told = {"state": TrialState.PRUNED}
        try:
            # idempotent: a retry after a commit that did land finds the trial finished
            self._patient(lambda: self._tell(number, told))
        except Unreachable as exc:
            driven().ending.give_up(exc)  # left RUNNING: the resumed study reconciles it
            return
        self._told.add(trial_id)  # only once told: a failed tell is not forgotten
        self._asked.pop(trial_id, None)

    def _tell(self, number: int, told: dict[str, Any]) -> None:
        with quiet_optuna():
            self._study.tell(number, skip_if_finished=True, **told)

    # -- Tune's experiment checkpoints: the map of trials only
    def save(self, checkpoint_path: str) -> None:
        state = {"numbers": self._numbers, "told": sorted(self._told),
                 "rerun_served": sorted(self._rerun_served)}
        atomic_write_text(checkpoint_path, json.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text(encoding="utf-8"))
        self._numbers = {tid: int(n) for tid, n in state["numbers"].items()}
        self._told = set(state["told"])
        self._rerun_served = set(state.get("rerun_served", []))
        self._asked = {}
        owned = set(self._numbers.values())  # Tune's restored trials keep theirs
        self._orphans = [t for t in self._orphans if t.number not in owned]


def _report(trial: optuna.trial.Trial, value: float, step: int) -> None:
    with quiet_optuna(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a retried epoch reported again
        try:
            trial.report(value, step)
        except RuntimeError:  # finished meanwhile (a resumed driver's stale view)
            pass

