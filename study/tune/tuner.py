"""A study's Ray Tune experiment, assembled in one place: `new_tuner`, `resumed_tuner`.

**Concurrency**: ``ConcurrencyLimiter(max_concurrent = slots)`` — with a non-basic searcher,
Tune allows as many pending trials as the limiter's bound (1 without it), so the slots fill.
**Scheduler**: FIFO, or ASHA (time attribute: the epoch; it never stops a trial at its last
epoch, which is about to be evaluated). **Failures**: ``FailureConfig(max_failures=retries)``;
a retried trial resumes from its last per-epoch checkpoint. **Storage**:
``RunConfig(storage_path=STUDY, name="tune")``, on an object store through the study's patient
filesystem (`tune_storage`). **Stopping**: `StrandedStopper` ends a study no node can hold a
trial of, or one whose server stayed away (`study.ending.Ending`). **Callbacks**:
`LiveProgress` (the live view), `StudyCallback` (progress lines, driver-side records),
`TrackerCallback` (the study's ``[tracking]``); Tune's own loggers are off
(`study.tune.session.quiet_tune`).
Imports Ray at the top: imported only by `study.tune.engine.run`, inside the session.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from search_spaces import KEY_FIELD
from study import store
from study.console import say
from study.spec import StudySpec
from study.store.outage import DriverWarning
from study.tune.callback import StudyCallback
from study.tune.live import LiveProgress
from study.tune.searcher import StudySearcher
from study.tune.session import tune_states
from study.tune.stopper import StrandedStopper
from study.tune.trackers import TrackerCallback
from study.tune.trainable import CONTEXT_KEY, TIME_ATTR, study_context, train_trial


def _trial_dirname(trial: Any) -> str:
    return f"{trial.config.get(KEY_FIELD, 'trial')}_{trial.trial_id}"


def _context(spec: StudySpec, info: dict[str, Any]) -> dict[str, Any]:
    return study_context(name=spec.name, storage=spec.storage, git_rev=info["git_rev"],
                         trial_function=info["trial_function"], metric=spec.search.metric,
                         cpus_per_trial=spec.resources.cpus_per_trial,
                         outage_grace=spec.failure.outage_grace)


def _trainable(spec: StudySpec) -> Any:
    r = spec.resources
    return tune.with_resources(train_trial, {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial})


def new_tuner(spec: StudySpec, info: dict[str, Any], max_concurrent: int, verbose: bool,
              rerun: dict[str, int] | None = None) -> Any:
    """A new Tuner for the study: where Tune saves, what runs a trial, how it is scheduled
    and what every trial shares; then what stops the experiment, what chooses the trials, and
    the driver's callbacks. ``rerun``: keys to run again (see `StudySearcher`)."""
    storage_path, filesystem = tune_storage(spec)
    trainable = _trainable(spec)
    scheduler = _scheduler(spec)
    context = _context(spec, info)
    r, budget = spec.resources, spec.search.num_samples
    stopper = StrandedStopper({"CPU": r.cpus_per_trial, "GPU": r.gpus_per_trial},
                              spec.failure.stranded_grace)
    searcher = StudySearcher({"spec": spec.to_dict(), "budget": budget, "rerun": rerun or {}},
                             spec)
    out: list[Any] = [LiveProgress(spec.name, budget), StudyCallback(budget)]
    if spec.tracking.enabled:
        out.append(TrackerCallback(spec.tracking.to_dict(), spec.storage, spec.name))
    return tune.Tuner(
        trainable,
        param_space={CONTEXT_KEY: context},
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
            scheduler=scheduler, num_samples=budget, reuse_actors=True,
            trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=store.TUNE_DIR, storage_path=storage_path, storage_filesystem=filesystem,
            verbose=1 if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=spec.failure.retries),
            # The last two checkpoints of a trial; Tune saves its state before deleting one,
            # so a restored experiment always finds the checkpoint it names.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # The driver's callbacks: the live view (first: it erases its block before the
            # others print), the end-of-trial lines and records, the study's trackers.
            stop=stopper, callbacks=out),
    )


def _scheduler(spec: StudySpec) -> Any:
    s = spec.scheduler
    if s.kind == "asha":
        return ASHAScheduler(time_attr=TIME_ATTR, metric=spec.search.metric,
                             mode=spec.search.mode, max_t=s.max_t, grace_period=s.grace_period,
                             reduction_factor=s.reduction_factor, stop_last_trials=False)
    return FIFOScheduler()


def tune_storage(spec: StudySpec) -> tuple[str, Any]:
    """Tune's ``storage_path`` and ``storage_filesystem`` (public ``RunConfig`` settings): the
    study folder; on an object store, through the study's patient filesystem
    (`study.store.StudyFolder.waiting_out`), so that Tune's checkpoint uploads in the trials and
    its state saves in the driver wait out an outage for ``outage_grace`` as our own writes do,
    each call bounded (pyarrow's own S3 client hangs ~99 s per call on a frozen server)."""
    if not store.is_uri(spec.storage):
        return spec.storage, None
    folder = store.StudyFolder.open(spec.storage).waiting_out(spec.failure.outage_grace,
                                                              DriverWarning())
    return folder.root, folder.fs


def resumed_tuner(spec: StudySpec, info: dict[str, Any], records: list[dict[str, Any]],
                  max_concurrent: int, verbose: bool, rerun: dict[str, int],
                  rerun_errored: bool) -> Any:
    """Tune's saved experiment when it can plan what remains; otherwise a new Tuner on the
    study's own plan and records (the Optuna study and the trial folders), with the old Tune
    folder set aside. Tune's state cannot plan what remains when it is absent or unreadable
    (a driver lost after ``tuner.pkl`` but before Tune's first state save: restored, it runs
    one trial per resume, forever), when none of its trials is unfinished (nothing it would
    resume; a later trial may still be due), or when finished trials must run again (their
    records were lost: Tune would not re-run a TERMINATED trial)."""
    path = store.join(spec.storage, store.TUNE_DIR)
    storage_path, filesystem = tune_storage(spec)
    tune_path = store.join(storage_path, store.TUNE_DIR)
    restorable = tune.Tuner.can_restore(tune_path, storage_filesystem=filesystem)
    states = tune_states(spec.storage) if restorable else {}
    unfinished = [s for s in states.values() if s not in ("TERMINATED", "ERROR")]
    errored = rerun_errored and any(s == "ERROR" for s in states.values())
    if states and not rerun and (unfinished or errored):
        say(spec.name, f"resuming from {path}")
        return tune.Tuner.restore(
            tune_path, trainable=_trainable(spec), storage_filesystem=filesystem,
            param_space={CONTEXT_KEY: _context(spec, info)},
            resume_unfinished=True, resume_errored=False, restart_errored=rerun_errored)
    again = {k: n for k, n in _errored_keys(records).items() if k not in rerun} \
        if rerun_errored else {}
    fs, fs_path = store.filesystem(path)
    if store.exists(fs, fs_path):
        stamp = store.utc_stamp()
        store.move_folder(fs, fs_path, f"{fs_path}.old-{stamp}")
        why = ("its trials' records were lost" if rerun else "Tune's saved state cannot plan "
               "the remaining trials")
        say(spec.name, f"continuing from the study's plan and records ({why}; Tune's folder "
                       f"kept as {store.TUNE_DIR}.old-{stamp})")
    else:
        say(spec.name, "no Tune state saved yet; continuing the Optuna study")
    if rerun:
        say(spec.name, f"re-running {len(rerun)} finished trial(s) whose records were lost: "
                       f"{', '.join(sorted(rerun))}")
    if again:
        say(spec.name, f"running {len(again)} errored trial(s) again: "
                       f"{', '.join(sorted(again))}")
    return new_tuner(spec, info, max_concurrent, verbose, {**rerun, **again})


def _errored_keys(records: list[dict[str, Any]]) -> dict[str, int]:
    """``--rerun-errored`` with a new Tuner: the keys of the errored trials to run again
    (`store.errored_to_rerun`: not a carried copy, not carried to a larger budget), to be
    enqueued again (their FAIL Optuna trial's number; -1 when Optuna has none)."""
    return dict.fromkeys(store.errored_to_rerun(records)[0], -1)
