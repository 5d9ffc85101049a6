"""A study, run or resumed: `run_study`, `resume_study` — the route from a validated spec to
its trials, in order:

1. the spec is validated once (`study.spec.validate`; the command line hands its result on);
2. the study folder is held (`study.store.lock`: one live driver per study) and, on resume,
   repaired (`study.recovery`); the run's `study.ending.Ending` is made with the hold (the
   lease's thread writes to it when it cannot keep the lease);
3. the engine runs the trials (`study.tune.engine.run`: Ray set up, the Tuner assembled and run
   to the end of ``fit``); once Ray counted the slots, a run writes ``study.json`` (spec,
   versions) and ``plan.parquet`` (the planned trials), a resume reconciles its Optuna study;
4. `ended` reads the ending once ``fit`` has returned — a server that stayed away is raised
   (`study.errors.Unreachable`, exit status 3) — then the results are consolidated
   (`study.store`) and the Optuna study told the results of re-run trials
   (`study.optuna_study`); the `Outcome` is returned for `study.summary`.

Every call on the Optuna study waits out a database outage
(`study.optuna_outage.database_patience`). Ray is imported only inside step 3 (see
`study.tune`).
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from study import optuna_study, store, summary
from study.console import say, warn
from study.ending import Ending
from study.errors import Unreachable, UsageError
from study.optuna_outage import database_patience
from study.optuna_study import finite
from study.outcome import Outcome
from study.provenance import DEFAULT_TRIAL_FUNCTION, chosen_function, git_revision, versions
from study.recovery import repair
from study.spec import StudySpec, Validated, load_study, validate
from study.spec.checks import check_new
from study.store import StudyFolder, lock
from study.tune import engine


@contextlib.contextmanager
def locked(spec: StudySpec, new: bool, folder: StudyFolder | None = None
            ) -> Iterator[tuple[StudyFolder, Ending]]:
    """Hold the study (`study.store.lock`) for the block: a second live driver is refused in one
    line before it touches anything. Yields the driver's folder (an outage of the object store
    waited out for ``outage_grace`` seconds, announced once: `StudyFolder.waiting_out`) and
    the run's `Ending` (the lease's thread tells it when the lease cannot be kept). A new
    study's folder is removed again if the run ends before writing ``study.json`` (a refusal
    after joining a cluster, …)."""
    folder = folder or StudyFolder.open(spec.storage)
    fs, root = folder.fs, folder.root
    created = new and not store.exists(fs, root)
    grace = spec.failure.outage_grace
    try:
        with _outage_line(spec):
            ending = Ending()
            with lock.study_lock(fs, root, spec.storage, lease_seconds=lock.lease_for(grace),
                                 outage_grace=grace, on_lost=ending.lose_lease):
                try:
                    yield folder.waiting_out(grace, warn), ending
                finally:
                    with contextlib.suppress(OSError):  # a store away: the error above is it
                        if created and not store.exists(fs, store.join(root, store.STUDY_FILE)):
                            _remove_empty_study(fs, root)
    except lock.StudyLockedError as exc:
        raise UsageError(str(exc)) from None


@contextlib.contextmanager
def _outage_line(spec: StudySpec) -> Iterator[None]:
    """A server that stayed unreachable: its `Unreachable` line says how to continue."""
    try:
        yield
    except Unreachable as exc:
        if exc.hint:
            raise  # the Optuna database's: it says how to continue already
        raise exc.with_hint(f"the study is left as it was: `gmmpvae resume {spec.storage}` "
                            "continues it once the store answers") from None


def _remove_empty_study(fs: Any, root: str) -> None:
    for name in (lock.LOCK_FILE, lock.LEASE_FILE):
        path = store.join(root, name)
        if store.exists(fs, path):
            fs.delete_file(path)
    with contextlib.suppress(OSError):
        if not fs.get_file_info(pafs.FileSelector(root)):
            fs.delete_dir(root)


def run_study(spec: StudySpec, *, trial_function: Any = None, verbose: bool = False,
              validated: Validated | None = None, quiet: bool = True) -> Outcome:
    """Validate (unless the caller did: ``validated``), create the study folder
    (``study.json``, ``plan.parquet``), run every trial with Ray Tune, consolidate. Without
    ``quiet`` (nor ``verbose``) the terminal shows the running trials live."""
    start = time.monotonic()
    folder = (validated or validate(spec, new=True)).folder
    # Checked again under the lock: a driver started seconds earlier passed validation too
    # and has written study.json by now.
    with locked(spec, new=True, folder=folder) as (folder, ending):
        check_new(spec, folder)

        def prepare(slots: int, max_concurrent: int) -> engine.Trials:
            function = chosen_function(trial_function) or DEFAULT_TRIAL_FUNCTION
            rev, libraries, created = git_revision(), versions(), store.now_utc().isoformat()
            info = {"spec": spec.to_dict(), "git_rev": rev, "versions": libraries,
                    "created_at": created, "host": platform.node(), "trial_function": function}
            store.write_plan(folder, spec.name, spec.plan() or [])
            store.write_json(folder.fs, folder.path(store.STUDY_FILE), info)
            say(spec.name, f"{spec.search.num_samples} trials, up to {max_concurrent} at once "
                f"({slots} slot(s) of {spec.resources.cpus_per_trial:g} CPU + "
                f"{spec.resources.gpus_per_trial:g} GPU); folder {spec.storage}")
            return engine.Trials(info)

        ran = engine.run(spec, ending, prepare, verbose=verbose, quiet=quiet)
        return ended(spec, folder, ran, ending, start)


def resume_study(study_dir: str, *, rerun_errored: bool = False, address: str | None = None,
                 trial_function: Any = None, verbose: bool = False,
                 quiet: bool = True) -> Outcome:
    """Continue a study after its driver was lost: Tune's experiment state (unfinished trials
    resume from their checkpoints; errored ones are restarted with ``rerun_errored``), the same
    Optuna study; then consolidate. A study whose Tune state was never saved starts its Tuner
    afresh on the same Optuna study (asked trials are adopted, done keys are not re-run)."""
    start = time.monotonic()
    spec, info = resumed_spec(study_dir, address, trial_function)
    folder = validate(spec, new=False).folder
    with locked(spec, new=False, folder=folder) as (folder, ending):
        repairs = repair.repair_study(spec, folder)  # before anything opens the journal
        for line in repairs.lines:
            say(spec.name, line)

        def prepare(slots: int, max_concurrent: int) -> engine.Trials | None:
            records = store.read_records(folder.fs, folder.root)
            rerun = database_patience(spec).call(lambda: repair.reconcile_optuna(
                spec, records, lambda r: record_metric(spec, folder, r)))
            if rerun_errored:
                say_errored_left(spec, records)
            if nothing_left(spec, records, rerun, rerun_errored):
                say(spec.name, "every planned trial has finished; nothing to run")
                return None
            return engine.Trials(info, engine.Resumed(records, rerun, rerun_errored))

        ran = engine.run(spec, ending, prepare, verbose=verbose, quiet=quiet)
        return ended(spec, folder, ran, ending, start)


def resumed_spec(study_dir: str, address: str | None, trial_function: Any = None
                 ) -> tuple[StudySpec, dict[str, Any]]:
    """The saved spec and info of a study driven again (resume, extend): on the Ray cluster
    ``address`` ("local": an embedded Ray) instead of its own, with ``trial_function``."""
    spec, info = load_study(study_dir)
    if address is not None:  # "local": an embedded Ray, whatever the study was run on
        study = {**spec.to_dict()["study"], "address": None if address == "local" else address}
        spec = StudySpec.from_dict({**spec.to_dict(), "study": study})
    name = chosen_function(trial_function)
    if name is not None:
        info["trial_function"] = name
    return spec, info


def say_errored_left(spec: StudySpec, records: list[dict[str, Any]]) -> None:
    """One line naming the errored trials ``--rerun-errored`` leaves (their error is carried
    to a larger budget: `store.errored_to_rerun`), if any."""
    left = store.errored_to_rerun(records)[1]
    if left:
        say(spec.name, f"--rerun-errored leaves {len(left)} errored trial(s) whose result a "
                       f"larger budget carries (re-run, its carried rows would be stale): "
                       f"{', '.join(left)}")


def nothing_left(spec: StudySpec, records: list[dict[str, Any]], rerun: dict[str, int],
                  rerun_errored: bool) -> bool:
    """A grid whose every planned key has a record, none to re-run (open searches: False)."""
    plan = spec.plan()
    if plan is None or rerun:
        return False
    if rerun_errored and store.errored_to_rerun(records)[0]:
        return False  # (a step's errored trials too: Tune's restored experiment runs them)
    states = {r["trial_key"]: r["state"] for r in records}
    return all(t["trial_key"] in states for t in plan)


def ended(spec: StudySpec, folder: StudyFolder, ran: engine.Ran, ending: Ending,
           start: float) -> Outcome:
    """The tail of a run and a resume, once ``fit`` has returned: a server that stayed away
    is raised (nothing is consolidated from a store gone away); else the results are
    consolidated and the Optuna study told the results of re-run trials."""
    unreachable = ending.unreachable()
    if unreachable is not None:
        raise unreachable
    consolidated = store.consolidate(folder, spec.name)
    completed = {r["trial_key"]: r for r in consolidated.records
                 if r["state"] == store.COMPLETED}
    patience = database_patience(spec)
    patience.call(lambda: optuna_study.record_reruns(
        spec, completed, lambda r: record_metric(spec, folder, r)))
    overlap = summary.max_overlap(summary.record_intervals(consolidated.records))
    return Outcome(spec.storage, consolidated, ran.slots, ran.max_concurrent, overlap,
                   time.monotonic() - start, patience.call(lambda: optuna_study.counts(spec)),
                   ending.stranded, spec)


def record_metric(spec: StudySpec, folder: StudyFolder, record: dict[str, Any]
                   ) -> float | None:
    """The study metric of a completed trial as its last result carried it."""
    metric = spec.search.metric
    if finite(record.get(metric)):
        return float(record[metric])
    path = folder.path(store.TRIALS_DIR, record["trial_key"], store.EPOCHS_FILE)
    if metric in store.EPOCH_COLUMNS and store.exists(folder.fs, path):
        rows = pq.read_table(path, filesystem=folder.fs).to_pylist()
        if rows and finite(rows[-1].get(metric)):
            return float(rows[-1][metric])
    return None

