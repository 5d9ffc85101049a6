"""A study's Ray Tune experiment, assembled in one place (`run_study`, `resume_study`).

Ray and Optuna are imported here lazily, inside functions (this and `study.trainable` are the
only modules that touch Ray). The pieces:

- **Ray**: no address → a fresh embedded Ray (``address="local"``, so a Ray left running on
  the machine is never joined silently), on the loopback interface, no dashboard, sized to the
  machine; ``"auto"`` / ``"host:port"`` → that cluster, our packages shipped to its workers
  with the job's runtime environment (``py_modules``), so a node needs only the dependencies.
- **Validation first** (`study.checks`): the spec, the storage (`study.spec.check_storage`,
  an RDB URL's reachability) and the resources — against this machine's CPUs/GPUs before an
  embedded Ray starts, against ``ray.nodes()`` of a cluster (then disconnected) — each problem
  one line, and the study folder is not created.
- **Searcher**: Optuna through ``OptunaSearch``, its study durable in the study folder's
  ``optuna.journal`` (or the spec's RDB URL) and its source of truth: the searcher is never
  pickled with its study — it pickles as its recipe (the spec) and re-opens the storage when
  unpickled (Tune pickles it into ``tuner.pkl``), and its checkpoints hold only the Tune-trial →
  Optuna-trial map, so ``Tuner.restore`` continues the same Optuna study. Grids: a
  ``GridSampler`` over the one parameter ``trial_key`` (every planned key once, also after a
  resume); open spaces: define-by-run
  (`StudySpec.suggest`). Either way the config reaching the trainable is the complete flat
  config plus ``trial_key``. Optuna trials asked by a driver that died before Tune saved its
  state are adopted by the next Tune trials, so no key is lost or run twice.
- **Concurrency**: ``ConcurrencyLimiter(max_concurrent = slots)`` — with a non-basic searcher,
  Tune allows as many pending trials as the limiter's bound (1 without it), so the slots fill.
- **Scheduler**: FIFO, or ASHA (time attribute: the epoch; it never stops a trial at its last
  epoch, which is about to be evaluated). **Failures**: ``FailureConfig(max_failures=retries)``;
  a retried trial resumes from its last per-epoch checkpoint.
- **Storage**: ``RunConfig(storage_path=STUDY, name="tune")``; trial folders, results: see
  `study.results`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import platform
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.config import MODEL_FIELDS, TRAIN_FIELDS
from study import results
from study.checks import (
    git_revision,
    local_capacity,
    node_slots,
    resource_error,
    validate,
)
from study.cli import UsageError
from study.spec import SPEC_FILENAME, StudySpec

TUNE_NAME = results.TUNE_DIR
OPTUNA_KEY_PARAM = "trial_key"
MAX_DUPLICATE_DRAWS = 100  # open searches: draws of an already-run configuration in a row
ENV_TRIAL_FUNCTION = "GMMPVAE_TRIAL_FUNCTION"  # "module:function" (tests and benchmarks)
# Ray started here listens on the loopback interface only (see _start_ray).
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


# ----------------------------------------------------------------------------------------------
# Ray


def _start_ray(spec: StudySpec, verbose: bool) -> tuple[int, bool]:
    """Start an embedded Ray or join the spec's cluster: (trial slots, whether Ray was started
    here and is to be shut down). A Ray this process already initialised (a test, a notebook)
    is used as it is. When no node can hold one trial, disconnect and raise `UsageError`."""
    address = spec.study.address
    if address is None:
        # Ray picks the machine's outward address for its node unless "clusters" are off;
        # off, it binds to 127.0.0.1. The variable reaches the raylet and workers it starts.
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    import ray

    started = not ray.is_initialized()
    if started and address is None:
        try:  # the driver process may have imported Ray before the variable was set
            ray._private.ray_constants.ENABLE_RAY_CLUSTER = os.environ[_LOOPBACK_ENV] != "0"
        except AttributeError:
            pass
        cpus, gpus = local_capacity(spec.resources.gpus_per_trial > 0)
        ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=verbose,
                 logging_level="INFO" if verbose else "WARNING")
    elif started:
        try:
            ray.init(address=address, runtime_env=_runtime_env(), log_to_driver=verbose,
                     logging_level="INFO" if verbose else "WARNING")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = " ".join(str(exc).split())[:300]
            raise UsageError(f"study.address={address!r}: cannot join the Ray cluster: "
                             f"{first}") from None
    nodes = [(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
             for n in ray.nodes() if n.get("Alive")]
    slots = node_slots(nodes, spec.resources.cpus_per_trial, spec.resources.gpus_per_trial)
    if slots < 1:
        if started:
            ray.shutdown()
        where = f"of the cluster at {address}" if address else "of the running Ray"
        raise resource_error(spec, where, max(nodes, default=(0.0, 0.0)))
    return slots, started


def _prefetch_imports() -> threading.Thread:
    """Import what the Tuner needs while Ray starts (ray.init mostly waits on its processes):
    about a second and a half less before the first trial."""
    def work() -> None:
        import importlib

        for name in ("ray.tune", "ray.tune.search.optuna", "ray.tune.schedulers", "optuna",
                     "study.trainable"):
            try:
                importlib.import_module(name)
            except Exception:  # the main thread imports it again and reports the problem
                return

    thread = threading.Thread(target=work, name="gmmpvae-prefetch", daemon=True)
    thread.start()
    return thread


def _runtime_env() -> dict[str, Any]:
    """Our packages travel with the job: a cluster node needs only the dependencies."""
    import importlib

    modules = []
    for name in ("models", "study", "search_spaces", "analysis"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    return {"py_modules": modules, "env_vars": {"PYTHONUNBUFFERED": "1"}}


def _stop_ray(started: bool) -> None:
    import ray

    if started and ray.is_initialized():
        ray.shutdown()


# ----------------------------------------------------------------------------------------------
# Optuna


def open_optuna_storage(spec: StudySpec) -> Any:
    """The study's Optuna storage: the journal file, or the RDB URL."""
    import optuna

    url = spec.optuna_storage_url
    if spec.optuna_storage_is_journal:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    return optuna.storages.RDBStorage(url)


def _grid_space(plan: dict[str, dict[str, Any]], trial: Any) -> dict[str, Any]:
    """Define-by-run space of a grid: the key, chosen by the GridSampler, names the config."""
    key = trial.suggest_categorical(OPTUNA_KEY_PARAM, list(plan))
    return dict(plan[key])


def _rebuild_searcher(recipe: dict[str, Any]) -> Any:
    """Unpickling a searcher re-creates it from its spec and its storage."""
    return _classes()["searcher"](recipe)


def _rebuild_callback(total: int) -> Any:
    return _classes()["callback"](total)


@functools.cache
def _classes() -> dict[str, type]:
    """The Ray/Optuna subclasses, defined on first use (so importing this module stays light);
    their instances pickle by recipe (``__reduce__``), never by class."""
    import optuna
    from ray.tune import Callback
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    from study import trainable

    class QuietGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            """No ``study.stop()`` (it only works inside ``study.optimize``)."""

    class StudySearcher(OptunaSearch):
        """OptunaSearch whose study lives in durable storage and is its source of truth."""

        def __init__(self, recipe: dict[str, Any]) -> None:
            spec = StudySpec.from_dict(recipe["spec"])
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            plan = spec.plan()
            if plan is not None:
                self._plan = {t[OPTUNA_KEY_PARAM]: t for t in plan}
                sampler = QuietGridSampler({OPTUNA_KEY_PARAM: list(self._plan)},
                                           seed=spec.search.sampler_seed)
                space = functools.partial(_grid_space, self._plan)
            else:
                self._plan = None
                sampler, space = spec.make_sampler(), spec.suggest
            super().__init__(space=space, metric=spec.search.metric, mode=spec.search.mode,
                             sampler=sampler, study_name=spec.name,
                             storage=open_optuna_storage(spec))
            self._recipe, self._budget = recipe, int(recipe["budget"])

        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return _rebuild_searcher, (self._recipe,)

        # -- choosing trials
        def _storage_trials(self) -> list[Any]:
            return self._ot_study.get_trials(deepcopy=False)

        def _orphan(self) -> Any:
            owned = {t._trial_id for t in self._ot_trials.values()}
            for t in self._storage_trials():
                if (t.state == optuna.trial.TrialState.RUNNING and t._trial_id not in owned
                        and "duplicate_of" not in t.user_attrs):
                    return optuna.trial.Trial(self._ot_study, t._trial_id)
            return None

        def _exhausted(self) -> bool:
            trials = self._storage_trials()
            if self._plan is not None:
                used = {t.params.get(OPTUNA_KEY_PARAM) for t in trials}
                return set(self._plan) <= used
            return sum("duplicate_of" not in t.user_attrs for t in trials) >= self._budget

        def _is_duplicate(self, key: str, number: int) -> bool:
            return any(t.user_attrs.get(OPTUNA_KEY_PARAM) == key and t.number != number
                       for t in self._storage_trials())

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            keep = MODEL_FIELDS | TRAIN_FIELDS | {OPTUNA_KEY_PARAM}
            for _ in range(MAX_DUPLICATE_DRAWS):
                if trial_id not in self._ot_trials:
                    orphan = self._orphan()
                    if orphan is not None:
                        self._ot_trials[trial_id] = orphan
                    elif self._exhausted():
                        return Searcher.FINISHED
                # OptunaSearch adds the raw Optuna parameters (pi_0, …) to the config that
                # the space returns; the trainable gets the flat config and its key only.
                config = {k: v for k, v in super().suggest(trial_id).items() if k in keep}
                ot_trial = self._ot_trials[trial_id]
                key = config[OPTUNA_KEY_PARAM]
                if self._plan is not None or not self._is_duplicate(key, ot_trial.number):
                    ot_trial.set_user_attr(OPTUNA_KEY_PARAM, key)
                    return config
                # An open search drew a configuration it already has: that Optuna trial fails
                # (marked as a duplicate, not counted), and another is drawn.
                ot_trial.set_user_attr("duplicate_of", key)
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
                del self._ot_trials[trial_id]
            return Searcher.FINISHED

        # -- results
        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            value, step = result.get(self.metric), result.get("epoch")
            if (ot_trial is None or trial_id in self._completed_trials
                    or trainable.STATE_KEY in result or step is None or not _finite(value)):
                return
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    ot_trial.report(float(value), int(step))
                except Exception:  # a finished trial (a resumed driver's stale view)
                    pass

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is None or trial_id in self._completed_trials:
                return
            self._completed_trials.add(trial_id)
            result = result or {}
            outcome, value = result.get(trainable.STATE_KEY), result.get(self.metric)
            states = optuna.trial.TrialState
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    if error or outcome == "ERROR" or (outcome == "COMPLETED"
                                                       and not _finite(value)):
                        self._ot_study.tell(ot_trial, state=states.FAIL)
                    elif outcome == "COMPLETED":
                        self._ot_study.tell(ot_trial, float(value))
                    else:  # stopped early by the scheduler
                        self._ot_study.tell(ot_trial, state=states.PRUNED)
                except (RuntimeError, ValueError):
                    pass  # already told (a trial re-run after a lost driver)

        # -- Tune's experiment checkpoints: the map of trials only
        def save(self, checkpoint_path: str) -> None:
            state = {"trials": {tid: t._trial_id for tid, t in self._ot_trials.items()},
                     "completed": sorted(self._completed_trials)}
            Path(checkpoint_path).write_text(json.dumps(state), encoding="utf-8")

        def restore(self, checkpoint_path: str) -> None:
            state = json.loads(Path(checkpoint_path).read_text(encoding="utf-8"))
            self._ot_trials = {tid: optuna.trial.Trial(self._ot_study, oid)
                               for tid, oid in state["trials"].items()}
            self._completed_trials = set(state["completed"])

    class StudyCallback(Callback):
        """Driver side: one line per finished trial; the record of a trial that could not
        write its own (stopped by the scheduler: PRUNED; lost after its last retry: ERROR)."""

        def __init__(self, total: int) -> None:
            self._total = total

        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return _rebuild_callback, (self._total,)

        def _line(self, trials: list[Any], trial: Any, record: dict[str, Any] | None) -> None:
            done = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")}
            done.add(trial.trial_id)
            state = record["state"] if record else "?"
            parts = [f"[{len(done):>{len(str(self._total))}}/{self._total}] {state:<9} "
                     f"{trial.config.get(OPTUNA_KEY_PARAM)}"]
            if record:
                if record.get("best_val_loss") is not None:
                    parts.append(f"best_val_loss {record['best_val_loss']:.3f}")
                if record.get("test_ll") is not None:
                    parts.append(f"test_ll {record['test_ll']:.3f}")
                if record.get("epochs_run") is not None:
                    parts.append(f"{record['epochs_run']} epochs")
                if record.get("error"):
                    parts.append(f"error: {record['error']}")
            print("  ".join(parts), flush=True)

        def _record(self, trial: Any) -> dict[str, Any] | None:
            ctx = trial.config[trainable.CONTEXT_KEY]
            fs, root = results.filesystem(ctx["storage"])
            folder = results.join(root, results.TRIALS_DIR, trial.config[OPTUNA_KEY_PARAM])
            return results.read_record(fs, folder)

        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any,
                             **info: Any) -> None:
            print(f"  retrying {trial.config.get(OPTUNA_KEY_PARAM)} from its last checkpoint "
                  f"(failure {trial.num_failures})", flush=True)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                              **info: Any) -> None:
            record = self._record(trial)
            if record is None:
                record = trainable.driver_record(trial.config, trial.checkpoint, "PRUNED")
            self._line(trials, trial, record)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                           **info: Any) -> None:
            record = self._record(trial)
            if record is None:
                error = trial.get_error()
                text = " ".join(str(error).split())[:500] if error else "the trial failed"
                record = trainable.driver_record(trial.config, trial.checkpoint, "ERROR", text)
            self._line(trials, trial, record)

    return {"searcher": StudySearcher, "callback": StudyCallback}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _trial_dirname(trial: Any) -> str:
    return f"{trial.config.get(OPTUNA_KEY_PARAM, 'trial')}_{trial.trial_id}"


# ----------------------------------------------------------------------------------------------
# The Tuner


@dataclass
class Outcome:
    """What a run (or resume) did."""

    study_dir: str
    consolidated: results.Consolidated
    slots: int
    max_concurrent: int
    observed_concurrency: int
    seconds: float
    optuna: dict[str, int] = field(default_factory=dict)


def _budget(spec: StudySpec) -> int:
    plan = spec.plan()
    return len(plan) if plan is not None else spec.search.num_samples


def _context(spec: StudySpec, info: dict[str, Any]) -> dict[str, Any]:
    from study.trainable import study_context

    return study_context(name=spec.name, storage=spec.storage, git_rev=info["git_rev"],
                         trial_function=info["trial_function"], metric=spec.search.metric,
                         cpus_per_trial=spec.resources.cpus_per_trial)


def _trainable(spec: StudySpec) -> Any:
    from ray import tune

    from study.trainable import train_trial

    r = spec.resources
    return tune.with_resources(train_trial, {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial})


def _quiet_tune(verbose: bool) -> None:
    """Tune's own console output: none unless verbose (our callback prints a line a trial);
    its warning about frequent state snapshots is noise here (we checkpoint every epoch). Its
    per-result loggers (result.json, progress.csv, TensorBoard events in STUDY/tune/) are off:
    every epoch is in the trial records already, and they cost the driver a third of its CPU."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # …so the experiment analysis of a restore or a status finds no per-trial metrics: fine.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if not verbose:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the new engine prints a header even when silent


def _new_tuner(spec: StudySpec, info: dict[str, Any], max_concurrent: int, verbose: bool) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from study.trainable import CONTEXT_KEY, TIME_ATTR

    budget = _budget(spec)
    searcher = _classes()["searcher"]({"spec": spec.to_dict(), "budget": budget})
    s = spec.scheduler
    if s.kind == "asha":
        scheduler = ASHAScheduler(time_attr=TIME_ATTR, metric=spec.search.metric,
                                  mode=spec.search.mode, max_t=s.max_t,
                                  grace_period=s.grace_period,
                                  reduction_factor=s.reduction_factor, stop_last_trials=False)
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        _trainable(spec),
        param_space={CONTEXT_KEY: _context(spec, info)},
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
            scheduler=scheduler, num_samples=budget, reuse_actors=True,
            trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=TUNE_NAME, storage_path=spec.storage, verbose=1 if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=spec.failure.retries),
            # The last two checkpoints of a trial; Tune saves its state before deleting one,
            # so a restored experiment always finds the checkpoint it names.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[_classes()["callback"](budget)]),
    )


def _versions() -> dict[str, str]:
    from study.trainable import versions

    return versions()


def run_study(spec: StudySpec, *, trial_function: Any = None, verbose: bool = False) -> Outcome:
    """Validate, create the study folder, run every trial with Ray Tune, consolidate."""
    start = time.monotonic()
    validate(spec, new=True)
    prefetch = _prefetch_imports()
    slots, started = _start_ray(spec, verbose)
    try:
        prefetch.join()
        from study.trainable import DEFAULT_TRIAL_FUNCTION, function_name

        name = function_name(trial_function or os.environ.get(ENV_TRIAL_FUNCTION)
                             or DEFAULT_TRIAL_FUNCTION)
        info = {"spec": spec.to_dict(), "git_rev": git_revision(), "versions": _versions(),
                "created_at": results.now_utc().isoformat(), "trial_function": name,
                "host": platform.node()}
        fs, root = results.filesystem(spec.storage)
        results.write_json(fs, results.join(root, SPEC_FILENAME), info)
        max_concurrent = spec.resources.max_concurrent or slots
        print(f"study {spec.name}: {_budget(spec)} trials, up to {max_concurrent} at once "
              f"({slots} slot(s) of {spec.resources.cpus_per_trial:g} CPU + "
              f"{spec.resources.gpus_per_trial:g} GPU); folder {spec.storage}", flush=True)
        _quiet_tune(verbose)
        _new_tuner(spec, info, max_concurrent, verbose).fit()
        return _finish(spec, slots, max_concurrent, start)
    finally:
        _stop_ray(started)


def load_study(study_dir: str) -> tuple[StudySpec, dict[str, Any]]:
    """The spec and run info saved in ``study.json`` of a study folder."""
    fs, root = results.filesystem(study_dir)
    path = results.join(root, SPEC_FILENAME)
    if not results.exists(fs, path):
        raise UsageError(f"{study_dir} is not a study folder (no {SPEC_FILENAME})")
    info = results.read_json(fs, path)
    spec = StudySpec.from_dict(info["spec"], origin=path)
    if results.filesystem(spec.storage)[1] != root:
        raise UsageError(f"{study_dir} was created as {spec.storage}: a study is resumed "
                         f"where it was created")
    return spec, info


def resume_study(study_dir: str, *, rerun_errored: bool = False, address: str | None = None,
                 trial_function: Any = None, verbose: bool = False) -> Outcome:
    """Continue a study after its driver was lost: Tune's experiment state (unfinished trials
    resume from their checkpoints; errored ones are restarted with ``rerun_errored``), the same
    Optuna study; then consolidate. A study whose Tune state was never saved starts its Tuner
    afresh on the same Optuna study (asked trials are adopted, done keys are not re-run)."""
    start = time.monotonic()
    spec, info = load_study(study_dir)
    if address is not None:  # "local": an embedded Ray, whatever the study was run on
        study = {**spec.to_dict()["study"], "address": None if address == "local" else address}
        spec = StudySpec.from_dict({**spec.to_dict(), "study": study})
    if trial_function is not None or os.environ.get(ENV_TRIAL_FUNCTION):
        from study.trainable import function_name

        info["trial_function"] = function_name(trial_function
                                               or os.environ[ENV_TRIAL_FUNCTION])
    validate(spec, new=False)
    prefetch = _prefetch_imports()
    slots, started = _start_ray(spec, verbose)
    try:
        prefetch.join()
        from ray import tune

        from study.trainable import CONTEXT_KEY

        max_concurrent = spec.resources.max_concurrent or slots
        path = results.join(spec.storage, TUNE_NAME)
        _quiet_tune(verbose)
        if tune.Tuner.can_restore(path):
            print(f"study {spec.name}: resuming from {path}", flush=True)
            tuner = tune.Tuner.restore(
                path, trainable=_trainable(spec),
                param_space={CONTEXT_KEY: _context(spec, info)}, resume_unfinished=True,
                resume_errored=False, restart_errored=rerun_errored)
        else:
            print(f"study {spec.name}: no Tune state saved yet; continuing the Optuna study",
                  flush=True)
            tuner = _new_tuner(spec, info, max_concurrent, verbose)
        tuner.fit()
        return _finish(spec, slots, max_concurrent, start)
    finally:
        _stop_ray(started)


def _finish(spec: StudySpec, slots: int, max_concurrent: int, start: float) -> Outcome:
    consolidated = results.consolidate(spec.storage, spec.name)
    _reconcile_optuna(spec, consolidated.records)
    overlap = results.max_overlap(results.record_intervals(consolidated.records))
    return Outcome(spec.storage, consolidated, slots, max_concurrent, overlap,
                   time.monotonic() - start, optuna_counts(spec))


def _reconcile_optuna(spec: StudySpec, records: list[dict[str, Any]]) -> None:
    """A trial re-run with ``--rerun-errored`` completes outside the searcher (Tune restarts it
    itself): add its result to the Optuna study, which holds its earlier failure."""
    import optuna

    study = optuna.load_study(study_name=spec.name, storage=open_optuna_storage(spec))
    trials = study.get_trials(deepcopy=False)
    complete = {t.user_attrs.get(OPTUNA_KEY_PARAM) for t in trials
                if t.state == optuna.trial.TrialState.COMPLETE}
    failed = {t.user_attrs.get(OPTUNA_KEY_PARAM): t for t in trials
              if t.state == optuna.trial.TrialState.FAIL and "duplicate_of" not in t.user_attrs}
    for record in records:
        key = record["trial_key"]
        if record["state"] != "COMPLETED" or key in complete or key not in failed:
            continue
        value = _record_metric(spec, record)
        if value is None:
            continue
        old = failed[key]
        study.add_trial(optuna.trial.create_trial(
            value=value, params=old.params, distributions=old.distributions,
            user_attrs={OPTUNA_KEY_PARAM: key, "rerun_of": old.number}))


def _record_metric(spec: StudySpec, record: dict[str, Any]) -> float | None:
    """The study metric of a completed trial as its last result carried it."""
    metric = spec.search.metric
    if _finite(record.get(metric)):
        return float(record[metric])
    fs, root = results.filesystem(spec.storage)
    path = results.join(root, results.TRIALS_DIR, record["trial_key"], results.EPOCHS_FILE)
    if metric in results.EPOCH_COLUMNS and results.exists(fs, path):
        import pyarrow.parquet as pq

        rows = pq.read_table(path, filesystem=fs).to_pylist()
        if rows and _finite(rows[-1].get(metric)):
            return float(rows[-1][metric])
    return None


# ----------------------------------------------------------------------------------------------
# Status


def optuna_counts(spec: StudySpec) -> dict[str, int]:
    """Optuna trials by state (duplicates of an open search left out); {} without a study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.optuna_storage_is_journal and not Path(spec.optuna_storage_url).is_file():
        return {}
    try:
        study = optuna.load_study(study_name=spec.name, storage=open_optuna_storage(spec))
    except KeyError:
        return {}
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if "duplicate_of" in t.user_attrs:
            continue
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def tune_states(study_dir: str) -> dict[str, str]:
    """trial_key → Tune's status (PENDING, RUNNING, TERMINATED, ERROR, …) from the saved
    experiment state ({} when there is none)."""
    path = results.join(str(study_dir), TUNE_NAME)
    fs, fs_path = results.filesystem(path)
    if not results.exists(fs, fs_path):
        return {}
    _quiet_tune(verbose=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ray.tune import ExperimentAnalysis

        try:
            analysis = ExperimentAnalysis(path)
        except Exception:  # no experiment state file yet
            return {}
    return {t.config.get(OPTUNA_KEY_PARAM, t.trial_id): t.status for t in analysis.trials}


def summary_lines(spec: StudySpec, outcome: Outcome) -> list[str]:
    """The end-of-run report."""
    c = outcome.consolidated
    states = ", ".join(f"{n} {s}" for s, n in sorted(c.states.items())) or "none"
    lines = [
        f"study {spec.name}: {c.trials} trial(s) recorded ({states}) in {outcome.seconds:.1f} s",
        f"results    {results.join(outcome.study_dir, results.RESULTS_DIR)}: trials.parquet "
        f"{c.trials} rows, epochs.parquet {c.epochs}, test_ll.parquet {c.test_ll}",
        f"concurrency up to {outcome.observed_concurrency} trial(s) ran at once "
        f"(max_concurrent {outcome.max_concurrent}, {outcome.slots} slot(s))",
    ]
    lines += results.device_lines(c.records)
    if outcome.optuna:
        lines.append("optuna     " + ", ".join(f"{n} {s}"
                                              for s, n in sorted(outcome.optuna.items())))
    missing = _budget(spec) - c.trials
    if missing > 0:
        lines.append(f"unfinished {missing} trial(s) have no record yet: continue with "
                     f"`gmmpvae resume {outcome.study_dir}`")
    metric = spec.search.metric
    column = "best_val_loss" if metric == "val_loss" else metric
    best = results.best_records(c.records, column, spec.search.mode)
    for label, record, name in (("best", best["metric"], column),
                                ("best", best["test_ll"], "test_ll")):
        if record is not None:
            lines.append(f"{label:<10} by {name}: {record['trial_key']} ({name} "
                         f"{record[name]:.4f})")
    return lines
