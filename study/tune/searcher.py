"""Optuna chooses a study's trials, Ray Tune runs them: `StudySearcher`, a Tune ``Searcher``
that maps Tune's events onto the study's decider (`study.trial_choice.TrialChoice`: what runs
next) and its Optuna study (`study.optuna_trials.OptunaTrials`: enqueue, ask, tell). Public
APIs only — Ray Tune: ``Searcher`` (``suggest``, ``on_trial_result``, ``on_trial_complete``,
``save``, ``restore``; ``Searcher.FINISHED``).

The Optuna study (the study folder's ``optuna.journal``, or the spec's RDB URL) is the source
of truth; the searcher holds only the map of Tune trial ids to Optuna trial numbers (all that
``save`` writes, with the re-runs handed out) and pickles as its recipe (Tune puts it into
``tuner.pkl``; ``recipe["rerun"]``: the keys to run again, `study.recovery`).

- ``suggest``: the decider's next trial — an orphan adopted (found when the searcher starts,
  and again after a failed call: Tune's restored trials keep theirs, ``restore``), a key run
  again outside Optuna, a grid's next waiting trial asked and its configuration recorded, an
  open space's next draw — or ``Searcher.FINISHED``. A whole attempt is retried while the
  database is away; past the outage grace the searcher does not raise into Tune (Tune logs a
  searcher's exception with a traceback, or fails the trial): it records the `Unreachable` in
  the experiment's `study.ending.Ending` (``give_up``), the stopper ends the experiment
  leaving the trials in flight unfinished, and the runner raises it (one line, exit status 3;
  ``gmmpvae resume``).
- ``on_trial_result``: intermediate values for optuna-dashboard (the trials asked here);
  ``on_trial_complete``: the trial told COMPLETE, PRUNED or FAIL under its number — marked
  told only once ``tell`` returned. While the experiment is being ended (`Ending.stopped`),
  nothing is told: those trials stay RUNNING for the next resume to adopt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from models.checkpoint import atomic_write_text
from search_spaces import KEY_FIELD
from study.errors import Unreachable
from study.optuna_study import finite
from study.optuna_trials import OptunaTrials
from study.process_state import driven
from study.spec import StudySpec
from study.store import COMPLETED, ERROR
from study.trial_choice import ADOPT, ASK, FINISHED, RERUN, TrialChoice
from study.tune.trainable import STATE_KEY


def _rebuild(recipe: dict[str, Any]) -> StudySearcher:
    return StudySearcher(recipe)


class StudySearcher(Searcher):
    """A study's trials from its Optuna study (see the module docstring). ``recipe``:
    ``{"spec": StudySpec.to_dict(), "budget": trials, "rerun": {trial_key: number}}``."""

    def __init__(self, recipe: dict[str, Any], spec: StudySpec | None = None) -> None:
        # ``spec``: the validated spec of this driver; rebuilt (and validated) from the recipe
        # only when Tune unpickles the searcher from tuner.pkl.
        spec = spec if spec is not None else StudySpec.from_dict(recipe["spec"])
        super().__init__(metric=spec.search.metric, mode=spec.search.mode)
        self._recipe, self._budget = recipe, int(recipe["budget"])
        self._optuna = optuna_ = OptunaTrials(spec)
        reruns = optuna_.call(lambda: optuna_.rerun_configs(dict(recipe.get("rerun", {}))))
        orphans, waiting = optuna_.call(lambda: optuna_.unfinished(set()))
        self._choice = TrialChoice(spec.plan(), reruns)
        self._choice.saw(orphans, waiting)
        self._numbers: dict[str, int] = {}  # Tune trial id → Optuna trial number
        self._asked: dict[str, optuna.trial.Trial] = {}  # trials asked here (for report)
        self._told: set[str] = set()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _rebuild, (self._recipe,)

    def _look(self) -> None:
        """One read of the unfinished trials for the decider (at the start, after a failed
        call, after a count gone wrong)."""
        self._choice.saw(*self._optuna.unfinished(set(self._numbers.values())))

    # -- choosing trials
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        ending = driven().ending
        if ending.stopped:
            return None  # the experiment is ending (a server stayed away, or stranded)
        try:
            return self._optuna.call(lambda: self._suggest_once(trial_id))
        except Unreachable as exc:
            ending.give_up(exc)  # Tune ends the experiment; the runner raises it
            return None

    def _suggest_once(self, trial_id: str) -> dict[str, Any] | str | None:
        """One attempt of `suggest` (repeated after a transient error)."""
        trial = self._optuna.half_asked(trial_id)  # asked by the attempt cut in flight
        while True:
            if self._optuna.stale:
                self._look()
            if trial is None:
                chosen = self._choice.next()
                if chosen.kind == ADOPT:
                    assert chosen.number is not None
                    self._numbers[trial_id] = chosen.number
                    return chosen.config
                if chosen.kind == RERUN:
                    return chosen.config  # no Optuna number: nothing is told for it
                if chosen.kind == FINISHED:
                    return Searcher.FINISHED
                if chosen.kind == ASK:
                    trial = self._optuna.ask(trial_id)
            if self._choice.plan is None:  # an open space: draw
                drawn = self._optuna.draw(trial_id, self._budget, trial)
                if drawn is None:
                    return Searcher.FINISHED
                trial, config = drawn
            else:
                config = self._choice.planned(trial.user_attrs.get(KEY_FIELD))
                if config is None:  # nothing was waiting after all (a count gone wrong)
                    self._optuna.fail(trial.number)
                    self._look()
                    trial = None
                    continue
                self._optuna.record_grid(trial, config)
            self._numbers[trial_id], self._asked[trial_id] = trial.number, trial
            return config

    # -- results
    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Intermediate values for optuna-dashboard, for the trials asked by this driver."""
        trial = self._asked.get(trial_id)
        value, step = result.get(self.metric), result.get("epoch")
        if (trial is None or trial_id in self._told or STATE_KEY in result or step is None
                or not finite(value) or driven().ending.stopped):
            return
        try:
            self._optuna.call(lambda: self._optuna.report(trial, float(value), int(step)))
        except Unreachable as exc:
            driven().ending.give_up(exc)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        number = self._numbers.get(trial_id)
        if number is None or trial_id in self._told or driven().ending.stopped:
            return  # (a stopped study's trials stay unfinished: adopted by the next resume)
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
            self._optuna.call(lambda: self._optuna.tell(number, told))
        except Unreachable as exc:
            driven().ending.give_up(exc)  # left RUNNING: the resumed study reconciles it
            return
        self._told.add(trial_id)  # only once told: a failed tell is not forgotten
        self._asked.pop(trial_id, None)

    # -- Tune's experiment checkpoints: the map of trials only
    def save(self, checkpoint_path: str) -> None:
        state = {"numbers": self._numbers, "told": sorted(self._told),
                 "rerun_served": sorted(self._choice.served)}
        atomic_write_text(checkpoint_path, json.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text(encoding="utf-8"))
        self._numbers = {tid: int(n) for tid, n in state["numbers"].items()}
        self._told = set(state["told"])
        self._choice.served = set(state.get("rerun_served", []))
        self._asked = {}
        self._choice.owned(self._numbers.values())  # Tune's restored trials keep theirs
