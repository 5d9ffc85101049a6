"""A study's per-trial records (``STUDY/trials/<key>/trial.json``) and its plan
(``STUDY/plan.parquet``): built, written atomically, read back; a record supersedes its trial's
running marker (`study.store.running`), read beside the records here. The schemas and file names
are `study.store.schemas`'; the trial folders are the source of truth that
`study.store.consolidate` rebuilds the dataset from. Nothing here imports torch or Ray.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from models.records import EPOCH_COLUMNS, EPOCHS_TRIAL_SCHEMA
from study.store import running
from study.store.layout import (
    PLAN_FILE,
    TRIALS_DIR,
    StudyFolder,
    exists,
    join,
    now_utc,
    read_json,
    write_json,
    write_table,
)
from study.store.schemas import (
    DIAGNOSTIC_METRICS,
    EPOCHS_FILE,
    ERROR,
    MODEL_COLUMNS,
    PLAN_SCHEMA,
    RECORD_FILE,
    SCHEMA_VERSION,
    STATES,
    TEST_METRICS,
    TRAIN_COLUMNS,
)


def make_record(
    *,
    study: str,
    trial_key: str,
    state: str,
    config: dict[str, Any],
    error: str | None = None,
    metrics: dict[str, Any] | None = None,
    epochs: Sequence[dict[str, Any]] = (),
    started_at: datetime | str | None = None,
    ended_at: datetime | str | None = None,
    attempts: int = 1,
    node: str | None = None,
    versions: dict[str, str] | str | None = None,
    git_rev: str = "unknown",
    trial_dir: str | None = None,
    continued_from: str | None = None,
) -> dict[str, Any]:
    """The record of one trial (a row of trials.parquet as JSON-ready values).

    ``config`` is the flat trial configuration (``TrialConfig.to_flat()``); ``metrics`` the dict
    `models.trial.run_trial` returns (absent for a failed or pruned trial, whose ``epochs_run``,
    ``best_epoch`` and ``best_val_loss`` then come from ``epochs``, the rows reported so far).
    ``continued_from``: the trial_key of the smaller budget whose checkpoint the trial continued
    from (`study.extend_plan`; None: trained from scratch). ``config_key`` is derived when the
    study is consolidated (`study.store.consolidate`), not stored here.
    """
    if state not in STATES:
        raise ValueError(f"state={state!r} is invalid: expected one of {', '.join(STATES)}")
    metrics = dict(metrics or {})
    record: dict[str, Any] = {"study": study, "trial_key": trial_key, "state": state,
                              "error": error}
    record.update(_config_columns(config))
    if epochs:
        best = min(epochs, key=lambda row: (row["val_loss"], row["epoch"]))
        metrics.setdefault("epochs_run", max(int(row["epoch"]) for row in epochs))
        metrics.setdefault("best_epoch", int(best["epoch"]))
        metrics.setdefault("best_val_loss", float(best["val_loss"]))
        metrics.setdefault("train_seconds", float(sum(row["seconds"] for row in epochs)))
    for name in ("epochs_run", "best_epoch", "best_val_loss", "stopped_early", *TEST_METRICS,
                 "n_test", "train_seconds", "eval_seconds", *DIAGNOSTIC_METRICS, "collapsed"):
        record[name] = metrics.get(name)
    record["continued_from"], record["carried_from"] = continued_from, None
    if "is_samples" in metrics:
        record["is_samples"] = metrics["is_samples"]
    record["started_at"] = _iso(started_at)
    record["ended_at"] = _iso(ended_at or now_utc())
    record["attempts"] = int(attempts)
    record["node"] = node
    record["device"] = metrics.get("device") or config.get("device")
    record["gpu_memory_peak_mb"] = metrics.get("gpu_memory_peak_mb")
    record["versions"] = versions if isinstance(versions, str) or versions is None \
        else json.dumps(versions, sort_keys=True)
    record["git_rev"] = git_rev
    record["trial_dir"] = trial_dir
    record["schema_version"] = SCHEMA_VERSION
    return record


def carried_record(source: dict[str, Any], config: dict[str, Any], trial_key: str,
                   trial_dir: str) -> dict[str, Any]:
    """The record of ``config`` (a larger budget of ``source``'s configuration) that repeats
    ``source``'s result unchanged: the trial ended before its budget (stopped early, pruned,
    errored) and would have ended the same way at this one (docs/BUDGETS.md). The config
    columns, key and folder are this budget's; every other column is the source's, and
    ``carried_from`` names the trial whose folder holds the files (the first source of a
    chain of carries)."""
    record = {**source, **_config_columns(config), "trial_key": trial_key,
              "trial_dir": trial_dir, "continued_from": None,
              "carried_from": source.get("carried_from") or source["trial_key"],
              "schema_version": SCHEMA_VERSION}
    record.pop("config_key", None)  # derived when consolidated
    return record


def errored_to_rerun(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The errored trials ``--rerun-errored`` runs again, and those it leaves: (to run, left),
    each sorted by key. A trial is run again when it ran and errored (an ERROR record that is
    not a carried copy) and no larger budget repeats its result; one whose error a larger
    budget carries (docs/BUDGETS.md) is left — run again, its carried rows would repeat a
    result it no longer has."""
    carried_from = {r.get("carried_from") for r in records if r.get("carried_from")}
    ran = sorted(r["trial_key"] for r in records
                 if r["state"] == ERROR and not r.get("carried_from"))
    return ([k for k in ran if k not in carried_from], [k for k in ran if k in carried_from])


def record_config(record: dict[str, Any]) -> dict[str, Any]:
    """The flat trial configuration of a record (or a trials.parquet / plan.parquet row): its
    config columns, ``device_requested`` back to ``device``, absent (null) fields left out."""
    out = {}
    for name, _ in MODEL_COLUMNS + TRAIN_COLUMNS:
        value = record.get(name)
        if value is not None:
            out["device" if name == "device_requested" else name] = value
    return out


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat()


def _config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """A flat trial config as the config columns of trials.parquet / plan.parquet."""
    out = {}
    for name, _ in MODEL_COLUMNS + TRAIN_COLUMNS:
        value = config.get("device" if name == "device_requested" else name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def write_plan(study_dir: StudyFolder | str, study: str, plan: Sequence[dict[str, Any]]
               ) -> None:
    """Write ``STUDY/plan.parquet`` (atomically): one row per planned trial (``plan``: flat
    configs with their ``trial_key``), so that readers need no spec to know the plan."""
    rows = [{"study": study, "trial_key": t["trial_key"], **_config_columns(t)} for t in plan]
    folder = StudyFolder.of(study_dir)
    fs, root = folder.fs, folder.root
    write_table(fs, join(root, PLAN_FILE), pa.Table.from_pylist(rows, schema=PLAN_SCHEMA))


def read_plan(study_dir: StudyFolder | str) -> list[dict[str, Any]]:
    """The planned trials of ``STUDY/plan.parquet`` as rows (``[]`` for an open search)."""
    folder = StudyFolder.of(study_dir)
    fs, root = folder.fs, folder.root
    return pq.read_table(join(root, PLAN_FILE), filesystem=fs).to_pylist()


def write_record(fs: pafs.FileSystem, trial_dir: str, record: dict[str, Any]) -> None:
    """Write ``trial.json`` into the trial's folder (atomically; the latest attempt wins), then
    remove the trial's running marker: at every moment one of the two says where it is."""
    write_json(fs, join(trial_dir, RECORD_FILE), record)
    running.remove(fs, trial_dir)


def write_epochs(fs: pafs.FileSystem, trial_dir: str, rows: Sequence[dict[str, Any]]) -> None:
    """Write a trial's ``epochs.parquet`` (models.records' columns: no study, no key)."""
    columns = {name: [row.get(name) for row in rows] for name in EPOCH_COLUMNS}
    table = pa.table(columns, schema=EPOCHS_TRIAL_SCHEMA)
    write_table(fs, join(trial_dir, EPOCHS_FILE), table)


def read_record(fs: pafs.FileSystem, trial_dir: str) -> dict[str, Any] | None:
    """The trial's record, or None while it has none (running, pending, lost)."""
    path = join(trial_dir, RECORD_FILE)
    try:
        return read_json(fs, path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a record that cannot be read counts as missing; the trial will rewrite it


def trial_folders(fs: pafs.FileSystem, study_dir: str) -> list[str]:
    """Paths of the trial folders of a study, sorted."""
    root = join(study_dir, TRIALS_DIR)
    if not exists(fs, root):
        return []
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    return sorted(i.path for i in infos if i.type == pafs.FileType.Directory)


def read_records(fs: pafs.FileSystem, study_dir: str) -> list[dict[str, Any]]:
    """Every trial record of a study, sorted by trial_key."""
    records = [read_record(fs, d) for d in trial_folders(fs, study_dir)]
    return sorted((r for r in records if r is not None), key=lambda r: r["trial_key"])


def read_markers(fs: pafs.FileSystem, study_dir: str, skip: Collection[str] = ()
                 ) -> dict[str, dict[str, Any]]:
    """trial_key → the running marker of every trial folder that has one (`study.store.running`;
    judged against the records and the driver by `running.judge`). ``skip``: keys not to look
    at (finished trials, which Tune never runs again: one read less each on an object store)."""
    markers = {}
    for folder in trial_folders(fs, study_dir):
        key = folder.rsplit("/", 1)[-1]
        marker = None if key in skip else running.read(fs, folder)
        if marker is not None:
            markers[key] = marker
    return markers
