"""What a crash can tear, repaired before a driver goes on (``run``/``resume``, under the study
lock), and named — never changed — by the readers (``status``, ``report``).

- **The Optuna journal** (`study.recovery.journal`): a torn last line is cut off (kept beside it); a
  broken middle line is one `UsageError` line naming file and line.
- **A trial's own files** (`store.trial_damage`): a truncated ``epochs.parquet`` /
  ``test_ll.parquet`` or a torn ``trial.json`` / ``metrics.json`` marks the trial for re-running:
  its record and summary are set aside (``<file>.set-aside-<UTC time>``, nothing is deleted), so
  the trial has no record and resumes from its checkpoint if intact (else from scratch).
- **Optuna against the trial records** (`reconcile_optuna`): the trial folders are the source
  of truth. An Optuna trial left RUNNING (its end was on the cut journal line) whose trial has a
  record is told the record's outcome; a key Optuna calls COMPLETE that has no record (deleted,
  or set aside above) is returned so the searcher re-enqueues it.

Nothing here imports Ray (the Optuna study is `study.optuna_study`'s, Ray-free).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

from search_spaces import KEY_FIELD
from study import optuna_study, store
from study.errors import UsageError
from study.recovery.journal import JournalDamagedError, journal_problem, repair_journal
from study.spec import StudySpec
from study.store import StudyFolder


@dataclass
class Repairs:
    """What `repair_study` did: lines for the user, and the trials set aside for re-running."""

    lines: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)


def repair_journal_of(spec: StudySpec) -> str | None:
    """Cut a torn last line off the study's Optuna journal (if it is a journal file)."""
    if not spec.optuna_storage_is_journal:
        return None
    try:
        return repair_journal(spec.optuna_storage_url)
    except JournalDamagedError as exc:
        raise UsageError(str(exc)) from None


def repair_study(spec: StudySpec, folder: StudyFolder | None = None) -> Repairs:
    """The journal, then every trial folder with torn files (see the module docstring);
    ``folder``: the study folder, opened already."""
    out = Repairs()
    line = repair_journal_of(spec)
    if line:
        out.lines.append(line)
    folder = folder or StudyFolder.open(spec.storage)
    fs, root = folder.fs, folder.root
    stamp = store.utc_stamp()
    for folder in store.trial_folders(fs, root):
        damage = store.trial_damage(fs, folder)
        if not damage:
            continue
        key = folder.rsplit("/", 1)[-1]
        for name in {*damage, store.RECORD_FILE, store.METRICS_FILE}:
            path = store.join(folder, name)
            if store.exists(fs, path):
                fs.move(path, f"{path}.set-aside-{stamp}")
        out.set_aside.append(key)
        files = ", ".join(sorted(damage))
        out.lines.append(f"trial {key}: {files} torn by a crash (set aside as "
                         f"*.set-aside-{stamp}); it is re-run from its checkpoint")
    return out


def problems(spec: StudySpec, folder: StudyFolder | None = None) -> list[str]:
    """Read-only: one line per torn file of the study (journal, trial files), for readers;
    ``folder``: the study folder, opened already."""
    lines = []
    if spec.optuna_storage_is_journal:
        problem = journal_problem(spec.optuna_storage_url)
        if problem:
            lines.append(problem)
    folder = folder or StudyFolder.open(spec.storage)
    fs, root = folder.fs, folder.root
    for folder in store.trial_folders(fs, root):
        damage = store.trial_damage(fs, folder)
        if damage:
            lines.append(store.damage_line(folder.rsplit("/", 1)[-1], damage))
    return lines


def reconcile_optuna(spec: StudySpec, records: list[dict[str, Any]],
                     metric_of: Callable[[dict[str, Any]], float | None]) -> dict[str, int]:
    """Tell RUNNING Optuna trials the outcome their trial records hold; return the keys Optuna
    calls COMPLETE that have no record (→ their Optuna trial number), to be re-run."""
    study = optuna_study.existing_study(spec)
    if study is None:
        return {}
    by_key = {r["trial_key"]: r for r in records}
    missing: dict[str, int] = {}
    with optuna_study.quiet_optuna():
        trials = study.get_trials(deepcopy=False)
        rerun_of = {t.user_attrs.get(optuna_study.RERUN_ATTR) for t in trials}
        for t in trials:
            key = t.user_attrs.get(KEY_FIELD)
            if key is None or optuna_study.DUPLICATE_ATTR in t.user_attrs:
                continue
            record = by_key.get(key)
            if t.state == TrialState.RUNNING and record is not None:
                value = metric_of(record) if record["state"] == store.COMPLETED else None
                if value is not None:
                    study.tell(t.number, value, skip_if_finished=True)
                elif record["state"] == store.PRUNED:
                    study.tell(t.number, state=TrialState.PRUNED, skip_if_finished=True)
                else:
                    study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            elif (t.state == TrialState.COMPLETE and record is None
                  and optuna_study.RERUN_ATTR not in t.user_attrs
                  and t.number not in rerun_of):
                missing[key] = t.number
    return missing
