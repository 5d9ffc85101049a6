"""The study's durable Optuna study (Ray-free): its storage, its sampler, a trial's
hyperparameters as Optuna parameters, its counts, and the results of re-run trials.

The Optuna study (the study folder's ``optuna.journal``, or the spec's RDB URL) is the source
of truth of what was asked and told; `study.tune.searcher` drives it from Ray Tune, and
`study.recovery.repair` reconciles it with the trial records. Public interfaces used —
``create_study(load_if_exists=True)``, ``load_study``, ``Study.get_trials(states=…)``,
``Study.add_trial`` + ``trial.create_trial``, ``FrozenTrial.number/params/user_attrs/state``,
the samplers of ``optuna.samplers``, ``JournalStorage(JournalFileBackend)`` and
``RDBStorage``. Optuna's own INFO lines ("Trial 3 finished …") are silenced around each call
(`search_spaces.quiet.quiet_optuna`), not process-wide.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from search_spaces import KEY_FIELD
from search_spaces.quiet import quiet_optuna
from study.spec import StudySpec
from study.spec.step import SOURCE_KEY

DUPLICATE_ATTR = "duplicate_of"  # an open search's redraw of a configuration it already has


RERUN_ATTR = "rerun_of"  # the result of a trial re-run with --rerun-errored (see record_reruns)


# Flat-config fields that say where a trial runs or follow from the dataset, and the checkpoint
# an extension step's trial continues from (`study.spec.step.SOURCE_KEY`): not hyperparameters.
NOT_HYPERPARAMETERS = frozenset({"data_dir", "device", "image_shape", "likelihood",
                                 SOURCE_KEY})


def open_storage(spec: StudySpec) -> Any:
    """The study's Optuna storage: the journal file, or the RDB URL."""
    url = spec.optuna_storage_url
    if spec.optuna_storage_is_journal:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    # pool_pre_ping: a pooled connection that a database restart closed is replaced before it
    # is used, instead of failing the driver's next call
    engine = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def open_study(spec: StudySpec, sampler: Any = None) -> optuna.Study:
    """The study's Optuna study, created on first use."""
    with quiet_optuna():
        return optuna.create_study(study_name=spec.optuna_name, storage=open_storage(spec),
                                   sampler=sampler, direction=_direction(spec),
                                   load_if_exists=True)


def existing_study(spec: StudySpec) -> optuna.Study | None:
    """The study's Optuna study if it exists (read-only use: status), else None."""
    if spec.optuna_storage_is_journal and not Path(spec.optuna_storage_url).is_file():
        return None
    try:
        with quiet_optuna():
            return optuna.load_study(study_name=spec.optuna_name, storage=open_storage(spec))
    except KeyError:
        return None


def _direction(spec: StudySpec) -> str:
    return "minimize" if spec.search.mode == "min" else "maximize"


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """The study's sampler (seeded with ``search.sampler_seed``). A grid's trials are all
    enqueued, so its sampler never draws: a seeded RandomSampler stands there."""
    seed = spec.search.sampler_seed
    samplers = optuna.samplers
    make = {
        "grid": lambda: samplers.RandomSampler(seed=seed),
        "tpe": lambda: samplers.TPESampler(seed=seed),
        "random": lambda: samplers.RandomSampler(seed=seed),
        "cmaes": lambda: samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "qmc": lambda: samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda: samplers.GPSampler(seed=seed),
        "nsga2": lambda: samplers.NSGAIISampler(seed=seed),
    }
    return make[spec.search.sampler]()


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """A flat trial config as Optuna-friendly scalars: π as its components ``pi[0]``, …; the
    fields that are not hyperparameters left out."""
    out: dict[str, Any] = {}
    for name, value in sorted(config.items()):
        if name in NOT_HYPERPARAMETERS or name == KEY_FIELD:
            continue
        if name == "pi":
            out.update({f"pi[{i}]": float(p) for i, p in enumerate(value)})
        elif value is None or isinstance(value, bool | int | float | str):
            out[name] = value
    return out


def grid_distributions(plan: list[dict[str, Any]]) -> dict[str, Any]:
    """Categorical distributions of the hyperparameters a grid varies (their planned values)."""
    values: dict[str, list[Any]] = {}
    for config in plan:
        for name, value in hyperparameters(config).items():
            if value not in values.setdefault(name, []):
                values[name].append(value)
    counts = {name: sum(name in hyperparameters(c) for c in plan) for name in values}
    return {name: optuna.distributions.CategoricalDistribution(choices)
            for name, choices in values.items()
            if len(choices) > 1 or counts[name] < len(plan)}


def counted(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that stands for a configuration: not a redraw, not an orphan that was never
    assigned one, not the added result of a re-run."""
    attrs = trial.user_attrs
    return KEY_FIELD in attrs and DUPLICATE_ATTR not in attrs and RERUN_ATTR not in attrs


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def counts(spec: StudySpec) -> dict[str, int]:
    """Optuna trials by state (an open search's redraws left out), over the study's Optuna
    study and those of its extension steps (`study_names`); {} without a study."""
    if spec.optuna_storage_is_journal and not Path(spec.optuna_storage_url).is_file():
        return {}
    storage = open_storage(spec)
    out: dict[str, int] = {}
    for name in study_names(spec, storage):
        with quiet_optuna():
            study = optuna.load_study(study_name=name, storage=storage)
        for t in study.get_trials(deepcopy=False):
            if DUPLICATE_ATTR not in t.user_attrs:
                out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def study_names(spec: StudySpec, storage: Any = None) -> list[str]:
    """The names of the study's Optuna studies in its storage: its own, and one per extension
    step (``<name>+max_epochs=N…``, `study.spec.step`)."""
    names = optuna.get_all_study_names(storage or open_storage(spec))
    return sorted(n for n in names if n == spec.name or n.startswith(f"{spec.name}+"))


def record_reruns(spec: StudySpec, completed: dict[str, dict[str, Any]],
                  metric_of: Callable[[dict[str, Any]], float | None]) -> None:
    """A trial re-run with ``--rerun-errored`` completes outside the searcher (Tune restarts it
    itself, and its Optuna trial has been told FAIL): add its result (``completed``: trial_key
    → record of the completed trials; ``metric_of(record)``: its metric) as a new COMPLETE
    trial with the same parameters, in the Optuna study that holds its FAIL trial — the
    study's own or an extension step's (a study grown with ``gmmpvae extend`` re-runs the
    errored trials of its last step)."""
    storage = open_storage(spec)
    for name in study_names(spec, storage):
        with quiet_optuna():
            study = optuna.load_study(study_name=name, storage=storage)
            trials = study.get_trials(deepcopy=False)
            complete = {t.user_attrs.get(KEY_FIELD) for t in trials
                        if t.state == TrialState.COMPLETE}
            failed = {t.user_attrs.get(KEY_FIELD): t for t in trials
                      if t.state == TrialState.FAIL and counted(t)}
            for key, record in completed.items():
                value = None if key in complete or key not in failed else metric_of(record)
                if value is None:
                    continue
                old = failed[key]
                study.add_trial(optuna.trial.create_trial(
                    value=value, params=old.params, distributions=old.distributions,
                    user_attrs={**old.user_attrs, RERUN_ATTR: old.number}))
