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
  ``suggest`` asks the next waiting one and returns ``Searcher.FINISHED`` when none waits.
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
  it ends, so no key is lost or run twice. The Tune-trial → Optuna-number map is all that
  ``save`` writes; the searcher pickles as its recipe (Tune puts it into ``tuner.pkl``).
- Optuna's own INFO lines ("Trial 3 finished …") are silenced around each call
  (`study.optuna_study.quiet_optuna`), not process-wide.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from models.checkpoint import atomic_write_text
from search_spaces import KEY_FIELD
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
from study.spec import StudySpec
from study.store import COMPLETED, ERROR
from study.tune import stopper
from study.tune.trainable import STATE_KEY

MAX_DUPLICATE_DRAWS = 100  # open searches: draws of an already-run configuration in a row
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
        self._study = open_study(spec, make_sampler(spec))
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
        if self._plan is not None:
            self._enqueue_missing()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _rebuild, (self._recipe,)

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

    # -- choosing trials
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        orphan = self._orphan()
        if orphan is not None:
            config = self._config_of(orphan)
            if config is not None:
                self._numbers[trial_id] = orphan.number
                return config
        rerun = self._next_rerun()
        if rerun is not None:
            return rerun  # no Optuna number: nothing is told for it
        if self._plan is not None:
            return self._suggest_grid(trial_id)
        return self._suggest_open(trial_id)

    def _next_rerun(self) -> dict[str, Any] | None:
        """The configuration of the next lost-record key to run again, or None."""
        for key, number in sorted(self._rerun.items()):
            if key in self._rerun_served:
                continue
            self._rerun_served.add(key)
            if self._plan is not None and key in self._plan:
                return dict(self._plan[key])
            old = next((t for t in self._trials(TrialState.COMPLETE) if t.number == number),
                       None)
            if old is not None and old.user_attrs.get(KEY_FIELD) == key:
                try:
                    config = self._spec.suggest(optuna.trial.FixedTrial(old.params, number))
                except ValueError:
                    continue
                if config[KEY_FIELD] == key:
                    return config
        return None

    def _orphan(self) -> optuna.trial.FrozenTrial | None:
        """A RUNNING Optuna trial that no Tune trial of this searcher owns."""
        owned = set(self._numbers.values())
        for t in self._trials(TrialState.RUNNING):
            if t.number not in owned:
                return t
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

    def _suggest_grid(self, trial_id: str) -> dict[str, Any] | str:
        if not self._trials(TrialState.WAITING):
            return Searcher.FINISHED
        with quiet_optuna():
            trial = self._study.ask()
            key = trial.user_attrs[KEY_FIELD]
            config = dict(self._plan[key])  # type: ignore[index]
            # Records the enqueued values as the trial's parameters.
            for name in hyperparameters(config).keys() & self._dists.keys():
                trial.suggest_categorical(name, self._dists[name].choices)
        self._numbers[trial_id], self._asked[trial_id] = trial.number, trial
        return config

    def _suggest_open(self, trial_id: str) -> dict[str, Any] | str:
        for _ in range(MAX_DUPLICATE_DRAWS):
            if sum(counted(t) for t in self._trials()) >= self._budget:
                return Searcher.FINISHED
            with quiet_optuna():
                trial = self._study.ask()
                config = self._spec.suggest(trial)
                key = config[KEY_FIELD]
                if any(t.user_attrs.get(KEY_FIELD) == key for t in self._trials() if counted(t)):
                    # Drawn before: fail this draw (not counted) and draw again.
                    trial.set_user_attr(DUPLICATE_ATTR, key)
                    self._study.tell(trial.number, state=TrialState.FAIL)
                    continue
                for name, value in hyperparameters(config).items():
                    if name not in trial.params:
                        trial.set_user_attr(name, value)
                trial.set_user_attr(KEY_FIELD, key)  # last: the trial now counts
            self._numbers[trial_id], self._asked[trial_id] = trial.number, trial
            return config
        return Searcher.FINISHED

    # -- results
    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Intermediate values for optuna-dashboard, for the trials asked by this driver."""
        trial = self._asked.get(trial_id)
        value, step = result.get(self.metric), result.get("epoch")
        if (trial is None or trial_id in self._told or STATE_KEY in result or step is None
                or not finite(value)):
            return
        with quiet_optuna(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a retried epoch reported again
            try:
                trial.report(float(value), int(step))
            except RuntimeError:  # finished meanwhile (a resumed driver's stale view)
                pass

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        number = self._numbers.get(trial_id)
        if number is None or trial_id in self._told or stopper.stopped():
            return  # (a stranded study's trials stay unfinished: adopted by the next resume)
        self._told.add(trial_id)
        self._asked.pop(trial_id, None)
        result = result or {}
        outcome, value = result.get(STATE_KEY), result.get(self.metric)
        with quiet_optuna():
            if error or outcome == ERROR or (outcome == COMPLETED and not finite(value)):
                self._study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            elif outcome == COMPLETED:
                self._study.tell(number, float(value), skip_if_finished=True)
            else:  # stopped early by the scheduler
                self._study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)

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

