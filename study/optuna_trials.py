"""What a study's searcher asks and tells its Optuna study: `OptunaTrials` — enqueue the plan,
read the unfinished trials, ask, record an asked trial's configuration, draw an open space's
next one, tell, report. Ray-free; the decisions are `study.trial_choice.TrialChoice`'s.

Public Optuna interfaces only: ``create_study(load_if_exists=True)``,
``Study.enqueue_trial(params, user_attrs)``, ``Study.ask``, ``Trial.suggest_categorical``,
``Trial.set_user_attr``, ``Trial.report``, ``Study.tell(trial_number, …, skip_if_finished=True)``,
``Study.get_trials(states=…)``, ``FrozenTrial.number/params/user_attrs/state``,
``trial.FixedTrial``.

- **Grids**: every planned trial is enqueued once, with its hyperparameters as Optuna
  parameters (categorical over the values the plan gives them: the ones that vary — M, K, the
  π components ``pi[0]`` …, arch, … — plus user attributes for the fixed ones) and its
  ``trial_key`` as a user attribute. A missing key is enqueued again whenever the searcher
  starts (a crash half-way through the enqueuing), so every key is planned exactly once.
- **Open spaces**: define-by-run, the space's own ``trial.suggest_*`` on an asked trial; a
  configuration drawn twice is told FAIL (user attribute ``duplicate_of``, not counted) and
  redrawn; ``budget`` counted trials, then none.
- **Database outages**: every call goes through the study's patience with its database
  (`study.optuna_outage.database_patience`, `call`), retried while it is away for at most
  ``[failure] outage_grace``. A call cut in flight is safe to repeat (``tell(skip_if_finished=
  True)``, ``report``, ``suggest_*`` rewrite the same rows) except ``ask``, whose lost trial is
  RUNNING and nobody's: after a failed call the view is ``stale`` (the searcher reads the
  unfinished trials again and adopts it), and a trial asked by an attempt whose next step
  failed is kept (`half_asked`) for its retry instead of asking another.
- Optuna's own INFO lines are silenced around each call (`search_spaces.quiet.quiet_optuna`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState

from search_spaces import KEY_FIELD
from search_spaces.quiet import quiet_optuna
from study.optuna_outage import database_patience
from study.optuna_study import (
    DUPLICATE_ATTR,
    counted,
    grid_distributions,
    hyperparameters,
    make_sampler,
    open_study,
)
from study.spec import StudySpec

MAX_DUPLICATE_DRAWS = 100  # open searches: draws of an already-run configuration in a row
T = TypeVar("T")


class OptunaTrials:
    """The study's Optuna study as its searcher uses it (see the module docstring): opened,
    and a grid's missing keys enqueued, when made."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self._patience = database_patience(spec)
        self.stale = False  # a call failed: an ask cut in flight may have left an orphan
        # (Tune trial id, trial) asked by an attempt whose next step failed
        self._half: tuple[str, optuna.trial.Trial] | None = None
        self.study = self._patience.call(lambda: open_study(spec, make_sampler(spec)),
                                         on_wait=self._mark_stale)
        plan = spec.plan()
        self.plan = None if plan is None else {t[KEY_FIELD]: t for t in plan}
        self._dists = grid_distributions(plan) if plan is not None else {}
        if self.plan is not None:
            self._patience.call(self._enqueue_missing, on_wait=self._mark_stale)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` — calls on the study — retried while the database is away."""
        return self._patience.call(fn, on_wait=self._mark_stale)

    def _mark_stale(self, _error: BaseException) -> None:
        self.stale = True

    def _trials(self, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def _enqueue_missing(self) -> None:
        """Enqueue every planned key that has no Optuna trial yet (all of them, first time)."""
        present = {t.user_attrs.get(KEY_FIELD) for t in self._trials() if counted(t)}
        assert self.plan is not None
        with quiet_optuna():
            for key, config in self.plan.items():
                if key in present:
                    continue
                hp = hyperparameters(config)
                params = {n: v for n, v in hp.items() if n in self._dists}
                fixed = {n: v for n, v in hp.items() if n not in self._dists}
                self.study.enqueue_trial(params, user_attrs={KEY_FIELD: key, **fixed})

    # -- reading
    def unfinished(self, owned: set[int]) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        """One read of the unfinished trials: the orphans — RUNNING, none of ``owned`` nor the
        half-asked trial — with the configurations they were asked for (one never assigned a
        configuration, its driver dead between asking and choosing, is told FAIL), and how
        many trials wait."""
        unfinished = self._trials(TrialState.WAITING, TrialState.RUNNING)
        owned = owned | ({self._half[1].number} if self._half is not None else set())
        orphans = []
        for t in unfinished:
            if t.state == TrialState.RUNNING and t.number not in owned:
                config = self._config_of(t)
                if config is None:
                    self.fail(t.number)
                else:
                    orphans.append((t.number, config))
        self.stale = False
        return orphans, sum(t.state == TrialState.WAITING for t in unfinished)

    def _config_of(self, trial: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
        """The configuration a trial was asked for (its key's plan, or its open-space
        parameters replayed), None when it has none."""
        key = trial.user_attrs.get(KEY_FIELD)
        if self.plan is not None:
            return dict(self.plan[key]) if key in self.plan else None
        return self._replayed(key, trial.params, trial.number)

    def _replayed(self, key: Any, params: dict[str, Any], number: int
                  ) -> dict[str, Any] | None:
        """The open space's configuration of ``params`` if its key is ``key``, else None."""
        if key is None:
            return None
        try:
            config = self.spec.suggest(optuna.trial.FixedTrial(params, number))
        except ValueError:
            return None
        return config if config[KEY_FIELD] == key else None

    def rerun_configs(self, rerun: dict[str, int]) -> dict[str, dict[str, Any] | None]:
        """The configurations of the keys to run again (``rerun``: trial_key → number of its
        COMPLETE trial): the plan's, or the COMPLETE trial's parameters replayed (None when
        neither is known). Reads the study only for keys outside the plan."""
        out: dict[str, dict[str, Any] | None] = {}
        plan = self.plan or {}
        others = {k: n for k, n in rerun.items() if k not in plan}
        complete = {t.number: t for t in self._trials(TrialState.COMPLETE)} if others else {}
        for key, number in rerun.items():
            old = complete.get(number)
            out[key] = dict(plan[key]) if key in plan else (
                None if old is None or old.user_attrs.get(KEY_FIELD) != key
                else self._replayed(key, old.params, number))
        return out

    # -- asking
    def half_asked(self, trial_id: str) -> optuna.trial.Trial | None:
        """The trial an attempt cut in flight asked for ``trial_id``, to go on with; one asked
        for another Tune trial is nobody's now (an orphan: the view is `stale`)."""
        half = self._half
        if half is not None and half[0] == trial_id:
            return half[1]
        if half is not None:
            self._half, self.stale = None, True
        return None

    def ask(self, trial_id: str) -> optuna.trial.Trial:
        """Ask the next waiting trial for ``trial_id`` (kept as half-asked until recorded)."""
        with quiet_optuna():
            trial = self.study.ask()
        self._half = (trial_id, trial)
        return trial

    def record_grid(self, trial: optuna.trial.Trial, config: dict[str, Any]) -> None:
        """An asked grid trial's enqueued values recorded as its parameters (again after a
        cut: ``suggest_*`` of a recorded parameter rewrites it)."""
        with quiet_optuna():
            for name in hyperparameters(config).keys() & self._dists.keys():
                trial.suggest_categorical(name, self._dists[name].choices)
        self._half = None

    def fail(self, number: int) -> None:
        """Tell a trial FAIL (idempotent); a half-asked one is nobody's after."""
        with quiet_optuna():
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        if self._half is not None and self._half[1].number == number:
            self._half = None

    def draw(self, trial_id: str, budget: int, trial: optuna.trial.Trial | None
             ) -> tuple[optuna.trial.Trial, dict[str, Any]] | None:
        """An open space's next configuration: ask (unless ``trial``: asked by an attempt cut
        in flight), draw, and fail a configuration drawn before (not counted), then draw
        again; None once ``budget`` trials count (or after too many redraws)."""
        mine = None if trial is None else trial.number
        trials = [t for t in self._trials() if counted(t) and t.number != mine]
        keys = {t.user_attrs.get(KEY_FIELD) for t in trials}
        if trial is None and len(trials) >= budget:
            return None
        for _ in range(MAX_DUPLICATE_DRAWS):
            with quiet_optuna():
                if trial is None:
                    trial = self.ask(trial_id)
                config = self.spec.suggest(trial)
                key = config[KEY_FIELD]
                if key in keys:
                    # Drawn before: fail this draw (not counted) and draw again.
                    self._half = None  # (cut from here on: an orphan with no key, failed)
                    trial.set_user_attr(DUPLICATE_ATTR, key)
                    self.study.tell(trial.number, state=TrialState.FAIL,
                                    skip_if_finished=True)
                    trial = None
                    continue
                for name, value in hyperparameters(config).items():
                    if name not in trial.params:
                        trial.set_user_attr(name, value)
                trial.set_user_attr(KEY_FIELD, key)  # last: the trial now counts
            self._half = None
            return trial, config
        return None

    # -- results
    def tell(self, number: int, told: dict[str, Any]) -> None:
        """Tell a trial's end (``told``: ``values=…`` or ``state=…``); idempotent."""
        with quiet_optuna():
            self.study.tell(number, skip_if_finished=True, **told)

    @staticmethod
    def report(trial: optuna.trial.Trial, value: float, step: int) -> None:
        """An intermediate value (for optuna-dashboard); a retried epoch reports again."""
        with quiet_optuna(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a retried epoch reported again
            try:
                trial.report(value, step)
            except RuntimeError:  # finished meanwhile (a resumed driver's stale view)
                pass
