"""A finished study grown to a larger budget and/or more seeds: `extend_study`, and
`resume_extension` for ``gmmpvae resume`` after a crash (docs/BUDGETS.md).

The route is a run's (`study.run`): the study held (one driver per study), then, one step at a
time as `study.extend_plan.plan_extend` plans them from the records,

1. the request is saved first (``STUDY/extend.json``, atomically, before anything else is
   written; removed when the last step is done): its presence sends ``gmmpvae resume`` here;
2. the step's trials join ``plan.parquet`` (rewritten whole), so ``status`` knows them;
3. each carried trial gets its record (``trial.json``, `study.store.carried_record`) and, in
   the step's Optuna study, a finished trial with its source's state and value;
4. the step's continued and fresh trials run through `study.tune.engine.run` as the study's
   spec for the step (`study.spec.step`: its plan, its Optuna study, FIFO); the tail is
   `study.run`'s (consolidation, re-runs told, the `Outcome`).

A resumed step (``resuming``) plans its trials without a result again, by the same keys:
Tune's saved experiment resumes them, or a new Tuner adopts the step's Optuna trials.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces import KEY_FIELD
from search_spaces.quiet import quiet_optuna
from study import extend_plan, optuna_study, store
from study import run as runner
from study.console import say
from study.errors import UsageError
from study.extend_plan import CARRY, CONTINUE, FRESH, ExtendPlan, Planned, Step
from study.optuna_outage import database_patience
from study.outcome import Outcome
from study.recovery import repair
from study.spec import StudySpec, load_study, validate
from study.spec.step import SOURCE_KEY, StepSpec, step_spec
from study.store import StudyFolder
from study.tune import engine

REQUEST_FILE = "extend.json"
CARRIED_ATTR = "carried_from"  # an Optuna trial that repeats a smaller budget's result


def request_of(study_dir: str) -> dict[str, Any] | None:
    """The saved request of an extension under way in ``study_dir`` (None: none)."""
    fs, root = store.filesystem(study_dir)
    path = store.join(root, REQUEST_FILE)
    return store.read_json(fs, path) if store.exists(fs, path) else None


def plan_of(spec: StudySpec, folder: StudyFolder, max_epochs: int | None, seeds: int | None,
            resuming: bool, rerun_errored: bool = False) -> ExtendPlan:
    """The extension's plan from the study's records and plan (`extend_plan.plan_extend`);
    ``rerun_errored``: the errored trials to run again (`store.errored_to_rerun`: in a step
    under way, its own) are planned as if they had no result."""
    records = store.read_records(folder.fs, folder.root)
    if rerun_errored:
        again = set(store.errored_to_rerun(records)[0])
        records = [r for r in records if r["trial_key"] not in again]
    plan_rows = store.read_plan(folder) if folder.exists(store.PLAN_FILE) else []

    def grid(n: int) -> list[dict[str, Any]]:
        return dataclasses.replace(spec, search=dataclasses.replace(spec.search, seeds=n)
                                   ).plan() or []

    keys = [r["trial_key"] for r in records]
    return extend_plan.plan_extend(
        records, plan_rows, max_epochs=max_epochs, seeds=seeds,
        grid=grid if spec.is_grid else None,
        checkpoints=extend_plan.checkpoints_left(folder, keys), resuming=resuming)


def dry_run(study_dir: str, max_epochs: int | None, seeds: int | None) -> list[str]:
    """What ``extend`` would do next, for people; nothing is written, nothing is held."""
    spec, _ = load_study(study_dir)
    folder = StudyFolder.open(spec.storage)
    return plan_of(spec, folder, max_epochs, seeds, resuming=False).lines()


def extend_study(study_dir: str, *, max_epochs: int | None = None, seeds: int | None = None,
                 address: str | None = None, trial_function: Any = None,
                 verbose: bool = False, quiet: bool = True) -> Outcome:
    """Grow the finished study in ``study_dir`` to ``max_epochs`` and/or ``seeds`` (module doc).
    Refused in one line (`UsageError`), nothing written, for what cannot be done."""
    return _extend(study_dir, None, max_epochs=max_epochs, seeds=seeds, address=address,
                   trial_function=trial_function, verbose=verbose, quiet=quiet)


def resume_extension(study_dir: str, request: dict[str, Any], *, address: str | None = None,
                     rerun_errored: bool = False, trial_function: Any = None,
                     verbose: bool = False, quiet: bool = True) -> Outcome:
    """Finish the extension whose ``request`` (``extend.json``) a lost driver left;
    ``rerun_errored``: the step in flight restarts its errored trials (before the next step
    plans from its records, so a re-run that completes is continued there, not carried)."""
    return _extend(study_dir, request, max_epochs=request.get("max_epochs"),
                   seeds=request.get("seeds"), address=address, rerun_errored=rerun_errored,
                   trial_function=trial_function, verbose=verbose, quiet=quiet)


def _extend(study_dir: str, saved: dict[str, Any] | None, *, max_epochs: int | None,
            seeds: int | None, address: str | None, trial_function: Any, verbose: bool,
            quiet: bool, rerun_errored: bool = False) -> Outcome:
    start = time.monotonic()
    spec, info = runner.resumed_spec(study_dir, address, trial_function)
    resuming = saved is not None
    folder = validate(spec, new=False).folder
    if not resuming:  # refused before the study is even held: nothing touched
        _refuse_under_way(spec, folder)
        plan_of(spec, folder, max_epochs, seeds, resuming)
    with runner.locked(spec, new=False, folder=folder) as (folder, ending):
        if resuming:
            for line in repair.repair_study(spec, folder).lines:
                say(spec.name, line)
        else:  # again, now that no other driver can change the study
            _refuse_under_way(spec, folder)
        plan = plan_of(spec, folder, max_epochs, seeds, resuming,  # refusals: nothing written
                       rerun_errored=resuming and rerun_errored)
        if plan.step is None:
            for line in plan.lines():
                say(spec.name, line)
            if resuming:  # the last step had finished: only the request was left
                folder.fs.delete_file(folder.path(REQUEST_FILE))
            return _outcome(spec, folder, start)
        if not resuming:
            store.write_json(folder.fs, folder.path(REQUEST_FILE),
                             {"max_epochs": max_epochs, "seeds": seeds,
                              "requested_at": store.now_utc().isoformat()})
        outcome: Outcome | None = None
        last = 0  # the budget of the step run last
        while plan.step is not None:
            for line in plan.lines():
                say(spec.name, line)
            if outcome is not None and plan.step.max_epochs <= last:  # ran, records missing
                say(spec.name, f"the step to max_epochs={last} did not finish: continue with "
                    f"`gmmpvae resume {spec.storage}`")
                return _whole(spec, folder, outcome)
            outcome = _run_step(spec, info, folder, ending, plan, verbose, quiet, start,
                                rerun_errored and outcome is None)
            if not ending.finished:  # stranded: the request stays for `gmmpvae resume`
                return _whole(spec, folder, outcome)
            last = plan.step.max_epochs
            plan = plan_of(spec, folder, max_epochs, seeds, resuming=True)
        folder.fs.delete_file(folder.path(REQUEST_FILE))
        assert outcome is not None  # a first step ran
        return _whole(spec, folder, outcome)


def _refuse_under_way(spec: StudySpec, folder: StudyFolder) -> None:
    if folder.exists(REQUEST_FILE):
        raise UsageError(
            f"an extension of {spec.storage} is under way ({REQUEST_FILE}: "
            f"{store.read_json(folder.fs, folder.path(REQUEST_FILE))}): finish it with "
            f"`gmmpvae resume {spec.storage}` first")


def step_name(spec: StudySpec, plan: ExtendPlan) -> str:
    """The Optuna study of the plan's next step: ``<study>+max_epochs=N[+seeds=S]``."""
    assert plan.step is not None
    seeds = "" if plan.seeds is None else f"+seeds={plan.seeds}"
    return f"{spec.name}+max_epochs={plan.step.max_epochs}{seeds}"


def step_rows(step: Step) -> list[dict[str, Any]]:
    """The step's plan rows as the route runs them: a continued trial names its source."""
    return [{**t.config, KEY_FIELD: t.trial_key,
             **({SOURCE_KEY: t.source} if t.how == CONTINUE else {})} for t in step.trials]


def _run_step(spec: StudySpec, info: dict[str, Any], folder: StudyFolder, ending: Any,
              plan: ExtendPlan, verbose: bool, quiet: bool, start: float,
              rerun_errored: bool = False) -> Outcome:
    """Steps 2-4 of the module doc for ``plan.step``; ``rerun_errored``: a resumed step
    restarts its errored trials."""
    step = plan.step
    assert step is not None
    _add_to_plan(spec, folder, step)
    stepped = step_spec(spec, step_name(spec, plan), step_rows(step))
    begun = database_patience(spec).call(lambda: optuna_study.existing_study(stepped)) \
        is not None  # a step resumed after a crash: its Optuna study exists
    if not begun:
        _set_tune_aside(spec, folder)
    records = {r["trial_key"]: r for r in store.read_records(folder.fs, folder.root)}
    for t in step.of(CARRY):
        assert t.source is not None
        store.write_record(folder.fs, folder.trial_dir(t.trial_key), store.carried_record(
            records[t.source], t.config, t.trial_key,
            store.join(spec.storage, store.TRIALS_DIR, t.trial_key)))
    database_patience(spec).call(lambda: _carry_in_optuna(stepped, folder, step, records))

    runs = bool(step.of(CONTINUE) or step.of(FRESH))  # else: every trial carried

    def prepare(slots: int, max_concurrent: int) -> engine.Trials | None:
        if not begun:  # a new Tuner on the step's Optuna study
            return engine.Trials(info) if runs else None
        records = store.read_records(folder.fs, folder.root)
        rerun = database_patience(spec).call(lambda: repair.reconcile_optuna(
            stepped, records, lambda r: runner.record_metric(spec, folder, r)))
        if rerun_errored:
            runner.say_errored_left(spec, records)
        if runner.nothing_left(stepped, records, rerun, rerun_errored):
            return None
        return engine.Trials(info, engine.Resumed(records, rerun, rerun_errored))

    ran = engine.run(stepped, ending, prepare, verbose=verbose, quiet=quiet)
    return runner.ended(stepped, folder, ran, ending, start)


def _set_tune_aside(spec: StudySpec, folder: StudyFolder) -> None:
    """The Tune experiment of the budget before (all its trials ended) kept as
    ``tune.old-<stamp>``: a step's Tuner saves its own experiment under ``tune/``, which a
    resumed step restores."""
    path = folder.path(store.TUNE_DIR)
    if store.exists(folder.fs, path):
        aside = f"{store.TUNE_DIR}.old-{store.utc_stamp()}"
        store.move_folder(folder.fs, path, folder.path(aside))
        say(spec.name, f"the Tune experiment of the budget before kept as {aside}")


def _add_to_plan(spec: StudySpec, folder: StudyFolder, step: Step) -> None:
    """The step's trials added to ``plan.parquet`` (rewritten whole, atomically)."""
    old = store.read_plan(folder) if folder.exists(store.PLAN_FILE) else []
    have = {r["trial_key"] for r in old}
    rows = [{**store.record_config(r), KEY_FIELD: r["trial_key"]} for r in old]
    rows += [r for r in extend_plan.plan_rows_of(step) if r[KEY_FIELD] not in have]
    store.write_plan(folder, spec.name, rows)


def _carry_in_optuna(stepped: StepSpec, folder: StudyFolder, step: Step,
                     records: dict[str, dict[str, Any]]) -> None:
    """Each carried trial once in the step's Optuna study, finished as its source ended
    (COMPLETE with its value, PRUNED, FAIL), with the step's distributions; a key already
    there (a resumed step) is not added again."""
    study = optuna_study.open_study(stepped)
    present = {t.user_attrs.get(KEY_FIELD) for t in study.get_trials(deepcopy=False)}
    dists = optuna_study.grid_distributions(stepped.plan())
    with quiet_optuna():
        for t in step.of(CARRY):
            if t.trial_key not in present:
                study.add_trial(_carried_trial(stepped, folder, t, records[t.source], dists))


def _carried_trial(spec: StudySpec, folder: StudyFolder, planned: Planned,
                   source: dict[str, Any], dists: dict[str, Any]) -> Any:
    hp = optuna_study.hyperparameters(planned.config)
    attrs = {KEY_FIELD: planned.trial_key, CARRIED_ATTR: planned.source,
             **{n: v for n, v in hp.items() if n not in dists}}
    params = {n: v for n, v in hp.items() if n in dists}
    used = {n: dists[n] for n in params}
    value = runner.record_metric(spec, folder, source) \
        if source["state"] == store.COMPLETED else None
    if value is not None:
        return optuna.trial.create_trial(value=value, params=params, distributions=used,
                                         user_attrs=attrs)
    state = TrialState.PRUNED if source["state"] == store.PRUNED else TrialState.FAIL
    return optuna.trial.create_trial(state=state, params=params, distributions=used,
                                     user_attrs=attrs)


def _whole(spec: StudySpec, folder: StudyFolder, outcome: Outcome) -> Outcome:
    """The last step's outcome told of the whole study: every budget's trials planned, every
    Optuna study's counts."""
    return dataclasses.replace(outcome, spec=_planned_spec(spec, folder),
                               optuna=database_patience(spec).call(
                                   lambda: optuna_study.counts(spec)))


def _outcome(spec: StudySpec, folder: StudyFolder, start: float) -> Outcome:
    """Nothing to run: the study as it stands."""
    consolidated = store.consolidate(folder, spec.name)
    return Outcome(spec.storage, consolidated, 0, 0, 0, time.monotonic() - start,
                   database_patience(spec).call(lambda: optuna_study.counts(spec)), False,
                   _planned_spec(spec, folder))


def _planned_spec(spec: StudySpec, folder: StudyFolder) -> StudySpec:
    """``spec`` whose ``num_samples`` counts every planned trial of every budget."""
    total = planned_total(spec, folder)
    return dataclasses.replace(spec, search=dataclasses.replace(spec.search, num_samples=total))


def planned_keys(spec: StudySpec, folder: StudyFolder) -> list[str]:
    """The keys the study planned, every budget's: a grid's own plan and every key of
    ``plan.parquet`` (an extension's steps add theirs; an open search's has only those)."""
    rows = store.read_plan(folder) if folder.exists(store.PLAN_FILE) else []
    keys = [t[KEY_FIELD] for t in spec.plan() or []] + [r["trial_key"] for r in rows]
    return list(dict.fromkeys(keys))


def planned_total(spec: StudySpec, folder: StudyFolder) -> int:
    """How many trials the study plans at every budget: its planned keys, and an open
    search's ``num_samples`` too (its own trials are drawn, not planned)."""
    keys = planned_keys(spec, folder)
    return len(keys) if spec.is_grid else spec.search.num_samples + len(keys)
