"""A study's Ray Tune experiment, assembled in one place: `run_study`, `resume_study`.

The rooms it assembles (each documented in its module):

- `study.checks` — validation before anything starts: the spec, the storage, the Optuna
  storage and the resources; each problem one line, and the study folder is not created.
- `study.ray_session` — Ray: an embedded one on 127.0.0.1, or the spec's cluster; the trial
  slots of its live nodes; Tune's output kept quiet for the duration of a run.
- `study.optuna_search` — the Tune searcher over the study's durable Optuna study.
- `study.trainable` — the trainable; `study.progress` — the driver's callback (progress
  lines, records of trials that could not write their own); `study.results` — records and
  consolidation; `study.summary` — the end-of-run report.

Here: the Tuner. **Concurrency**: ``ConcurrencyLimiter(max_concurrent = slots)`` — with a
non-basic searcher, Tune allows as many pending trials as the limiter's bound (1 without it),
so the slots fill. **Scheduler**: FIFO, or ASHA (time attribute: the epoch; it never stops a
trial at its last epoch, which is about to be evaluated). **Failures**:
``FailureConfig(max_failures=retries)``; a retried trial resumes from its last per-epoch
checkpoint. **Storage**: ``RunConfig(storage_path=STUDY, name="tune")``. The run writes
``study.json`` (spec, versions) and ``plan.parquet`` (the planned trials) before its first trial.
Ray and Optuna are imported lazily, once `ray_session` has set Ray up.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from study import ray_session, store
from study.checks import check_new, git_revision, validate
from study.errors import UsageError
from study.recovery import repair
from study.spec import StudySpec
from study.store import lock
from study.study_file import load_study

ENV_TRIAL_FUNCTION = "GMMPVAE_TRIAL_FUNCTION"  # "module:function" (tests and benchmarks)


@dataclass
class Outcome:
    """What a run (or resume) did."""

    study_dir: str
    consolidated: store.Consolidated
    slots: int
    max_concurrent: int
    observed_concurrency: int
    seconds: float
    optuna: dict[str, int] = field(default_factory=dict)
    stranded: bool = False  # ended because no node could hold a trial (resumable)


def _trial_dirname(trial: Any) -> str:
    from search_spaces import KEY_FIELD

    return f"{trial.config.get(KEY_FIELD, 'trial')}_{trial.trial_id}"


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


@contextlib.contextmanager
def _locked(spec: StudySpec, new: bool) -> Iterator[None]:
    """Hold the study (`study.lock`) for the block: a second live driver is refused in one line
    before it touches anything. A new study's folder is removed again if the run ends before
    writing ``study.json`` (a refusal after joining a cluster, …)."""
    fs, root = store.filesystem(spec.storage)
    created = new and not store.exists(fs, root)
    try:
        with lock.study_lock(fs, root, spec.storage):
            try:
                yield
            finally:
                if created and not store.exists(fs, store.join(root, store.STUDY_FILE)):
                    _remove_empty_study(fs, root)
    except lock.StudyLockedError as exc:
        raise UsageError(str(exc)) from None


def _remove_empty_study(fs: Any, root: str) -> None:
    import pyarrow.fs as pafs

    for name in (lock.LOCK_FILE, lock.LEASE_FILE):
        path = store.join(root, name)
        if store.exists(fs, path):
            fs.delete_file(path)
    with contextlib.suppress(OSError):
        if not fs.get_file_info(pafs.FileSelector(root)):
            fs.delete_dir(root)


def _stranded() -> bool:
    """Whether the experiment that just ended was stopped as stranded; forgotten afterwards
    (the flag is process-wide, see `study.stranded`)."""
    from study import stranded

    was = stranded.stopped()
    stranded.reset()
    return was


def _stopper(spec: StudySpec) -> Any:
    from study.stranded import StrandedStopper

    r = spec.resources
    return StrandedStopper({"CPU": r.cpus_per_trial, "GPU": r.gpus_per_trial},
                           spec.failure.stranded_grace)


def _new_tuner(spec: StudySpec, info: dict[str, Any], max_concurrent: int, verbose: bool,
               stopper: Any = None, rerun: dict[str, int] | None = None) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from study.optuna_search import StudySearcher
    from study.progress import StudyCallback
    from study.trainable import CONTEXT_KEY, TIME_ATTR

    budget = spec.search.num_samples
    searcher = StudySearcher({"spec": spec.to_dict(), "budget": budget, "rerun": rerun or {}})
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
            name=store.TUNE_DIR, storage_path=spec.storage, verbose=1 if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=spec.failure.retries),
            # The last two checkpoints of a trial; Tune saves its state before deleting one,
            # so a restored experiment always finds the checkpoint it names.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            stop=stopper, callbacks=[StudyCallback(budget)]),
    )


def _trial_function_name(trial_function: Any) -> str | None:
    """``module:function`` of the trial function (Ray is not imported here: it must not be
    before the session sets it up, see `ray_session`)."""
    chosen = trial_function or os.environ.get(ENV_TRIAL_FUNCTION)
    if not chosen or isinstance(chosen, str):
        return chosen or None
    return f"{chosen.__module__}:{chosen.__qualname__}"


def run_study(spec: StudySpec, *, trial_function: Any = None, verbose: bool = False) -> Outcome:
    """Validate, create the study folder (``study.json``, ``plan.parquet``), run every trial
    with Ray Tune, consolidate."""
    start = time.monotonic()
    validate(spec, new=True)
    with _locked(spec, new=True):
        # Again, under the lock: a driver started seconds earlier passed validation too and
        # has written study.json by now.
        check_new(spec)
        with ray_session.session(spec, verbose) as slots:
            from study.trainable import DEFAULT_TRIAL_FUNCTION, versions

            info = {"spec": spec.to_dict(), "git_rev": git_revision(), "versions": versions(),
                    "created_at": store.now_utc().isoformat(), "host": platform.node(),
                    "trial_function": _trial_function_name(trial_function)
                    or DEFAULT_TRIAL_FUNCTION}
            fs, root = store.filesystem(spec.storage)
            store.write_plan(spec.storage, spec.name, spec.plan() or [])
            store.write_json(fs, store.join(root, store.STUDY_FILE), info)
            max_concurrent = spec.resources.max_concurrent or slots
            print(f"study {spec.name}: {spec.search.num_samples} trials, up to {max_concurrent} "
                  f"at once ({slots} slot(s) of {spec.resources.cpus_per_trial:g} CPU + "
                  f"{spec.resources.gpus_per_trial:g} GPU); folder {spec.storage}", flush=True)
            stopper = _stopper(spec)
            try:
                with ray_session.quiet_tune(verbose, spec.storage):
                    _new_tuner(spec, info, max_concurrent, verbose, stopper).fit()
            finally:
                stranded = _stranded()
            return _finish(spec, slots, max_concurrent, start, stranded)


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
    name = _trial_function_name(trial_function)
    if name is not None:
        info["trial_function"] = name
    validate(spec, new=False)
    with _locked(spec, new=False):
        repairs = repair.repair_study(spec)  # before anything opens the journal
        for line in repairs.lines:
            print(f"study {spec.name}: {line}", flush=True)
        with ray_session.session(spec, verbose) as slots:
            max_concurrent = spec.resources.max_concurrent or slots
            fs, root = store.filesystem(spec.storage)
            records = store.read_records(fs, root)
            rerun = repair.reconcile_optuna(spec, records, lambda r: _record_metric(spec, r))
            stopper = _stopper(spec)
            try:
                with ray_session.quiet_tune(verbose, spec.storage):
                    if _nothing_left(spec, records, rerun, rerun_errored):
                        print(f"study {spec.name}: every planned trial has finished; nothing "
                              "to run", flush=True)
                    else:
                        _resumed_tuner(spec, info, records, max_concurrent, verbose, stopper,
                                       rerun, rerun_errored).fit()
            finally:
                stranded = _stranded()
            return _finish(spec, slots, max_concurrent, start, stranded)


def _nothing_left(spec: StudySpec, records: list[dict[str, Any]], rerun: dict[str, int],
                  rerun_errored: bool) -> bool:
    """A grid whose every planned key has a record, none to re-run (open searches: False)."""
    plan = spec.plan()
    if plan is None or rerun:
        return False
    states = {r["trial_key"]: r["state"] for r in records}
    if rerun_errored and store.ERROR in states.values():
        return False
    return all(t["trial_key"] in states for t in plan)


def _resumed_tuner(spec: StudySpec, info: dict[str, Any], records: list[dict[str, Any]],
                   max_concurrent: int, verbose: bool, stopper: Any, rerun: dict[str, int],
                   rerun_errored: bool) -> Any:
    """Tune's saved experiment when it can plan what remains; otherwise a new Tuner on the
    study's own plan and records (the Optuna study and the trial folders), with the old Tune
    folder set aside. Tune's state cannot plan what remains when it is absent or unreadable
    (a driver lost after ``tuner.pkl`` but before Tune's first state save: restored, it runs
    one trial per resume, forever), when none of its trials is unfinished (nothing it would
    resume; a later trial may still be due), or when finished trials must run again (their
    records were lost: Tune would not re-run a TERMINATED trial)."""
    from ray import tune

    from study.trainable import CONTEXT_KEY

    path = store.join(spec.storage, store.TUNE_DIR)
    states = ray_session.tune_states(spec.storage) if tune.Tuner.can_restore(path) else {}
    unfinished = [s for s in states.values() if s not in ("TERMINATED", "ERROR")]
    errored = rerun_errored and any(s == "ERROR" for s in states.values())
    if states and not rerun and (unfinished or errored):
        print(f"study {spec.name}: resuming from {path}", flush=True)
        return tune.Tuner.restore(
            path, trainable=_trainable(spec), param_space={CONTEXT_KEY: _context(spec, info)},
            resume_unfinished=True, resume_errored=False, restart_errored=rerun_errored)
    if rerun_errored:
        rerun = {**rerun, **_errored_keys(records)}
    fs, fs_path = store.filesystem(path)
    if store.exists(fs, fs_path):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        fs.move(fs_path, f"{fs_path}.old-{stamp}")
        why = ("its trials' records were lost" if rerun else "Tune's saved state cannot plan "
               "the remaining trials")
        print(f"study {spec.name}: continuing from the study's plan and records ({why}; "
              f"Tune's folder kept as {store.TUNE_DIR}.old-{stamp})", flush=True)
    else:
        print(f"study {spec.name}: no Tune state saved yet; continuing the Optuna study",
              flush=True)
    if rerun:
        print(f"study {spec.name}: re-running {len(rerun)} finished trial(s) whose records "
              f"were lost: {', '.join(sorted(rerun))}", flush=True)
    return _new_tuner(spec, info, max_concurrent, verbose, stopper, rerun)


def _errored_keys(records: list[dict[str, Any]]) -> dict[str, int]:
    """``--rerun-errored`` with a new Tuner: the keys whose record is ERROR, to be enqueued
    again (their FAIL Optuna trial's number; -1 when Optuna has none)."""
    return {r["trial_key"]: -1 for r in records if r["state"] == store.ERROR}


def _finish(spec: StudySpec, slots: int, max_concurrent: int, start: float,
            stranded: bool = False) -> Outcome:
    from study import optuna_search, summary

    consolidated = store.consolidate(spec.storage, spec.name)
    completed = {r["trial_key"]: r for r in consolidated.records
                 if r["state"] == store.COMPLETED}
    optuna_search.record_reruns(spec, completed, lambda r: _record_metric(spec, r))
    overlap = summary.max_overlap(summary.record_intervals(consolidated.records))
    return Outcome(spec.storage, consolidated, slots, max_concurrent, overlap,
                   time.monotonic() - start, optuna_search.counts(spec), stranded)


def _record_metric(spec: StudySpec, record: dict[str, Any]) -> float | None:
    """The study metric of a completed trial as its last result carried it."""
    metric = spec.search.metric
    if _finite(record.get(metric)):
        return float(record[metric])
    fs, root = store.filesystem(spec.storage)
    path = store.join(root, store.TRIALS_DIR, record["trial_key"], store.EPOCHS_FILE)
    if metric in store.EPOCH_COLUMNS and store.exists(fs, path):
        import pyarrow.parquet as pq

        rows = pq.read_table(path, filesystem=fs).to_pylist()
        if rows and _finite(rows[-1].get(metric)):
            return float(rows[-1][metric])
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
