"""A study's results: per-trial records and the consolidated Parquet dataset (schema version 2).

The study folder's layout and its storage helpers are `study.storage`'s. The files here:

``STUDY/trials/<trial_key>/``: one folder per trial: trial.json (the record below, written as the
trial ends), epochs.parquet, test_ll.parquet, metrics.json, config.json, checkpoint/, images
(see models.trial). ``STUDY/plan.parquet`` (`PLAN_SCHEMA`): the planned trials, written when
the study starts. ``STUDY/results/``: the consolidated dataset:

``trials.parquet`` (`TRIALS_SCHEMA`, one row per trial_key):
    ``study``, ``trial_key`` (stable, `search_spaces.trial_key`), ``state`` (``COMPLETED``;
    ``ERROR``: a non-finite loss or a crash that used up its retries, reason in ``error``;
    ``PRUNED``: stopped early by the scheduler, no test metrics), ``error``; every ModelConfig
    field and every TrainConfig field under its own name (``pi`` list<double>, ``image_shape``
    list<int64>) except TrainConfig's ``device``, stored as ``device_requested`` (``auto`` …),
    because ``device`` is the device the trial actually ran on; ``epochs_run``, ``best_epoch``,
    ``best_val_loss``, ``stopped_early``, ``test_re``, ``test_kl`` (the bound U), ``test_kl_mc``,
    ``test_elbo_bound`` (−(RE + U), the paper's "≤ ln p(x)"), ``test_elbo_mc``, ``test_ll`` (all
    nats per test image), ``test_kl_lse`` (U_lse, v2), ``n_test``, ``train_seconds``,
    ``eval_seconds``, the collapse diagnostics of the best epoch ``spread_ratio``,
    ``members_used``, ``resp_perplexity``, ``bound_gap``, ``lse_gap`` and ``collapsed``
    (models.diagnostics; v2, null for the VAE and for version-1 rows), ``started_at`` /
    ``ended_at`` (timestamp[us, UTC]; started_at is the first attempt's start), ``attempts``
    (1 + the times the trial was resumed from a checkpoint), ``node`` (``hostname/ip``),
    ``device`` (``cpu`` or ``cuda:<index> <GPU name>``), ``gpu_memory_peak_mb`` (the most GPU
    memory the trial's tensors held, ``torch.cuda.max_memory_allocated``; null on CPU and
    for a trial without metrics), ``versions`` (JSON: torch, ray, optuna, python), ``git_rev``
    (``git rev-parse HEAD`` at study start, or ``unknown``), ``trial_dir``, ``schema_version``
    (= 2; version-1 studies lack the v2 columns, which readers fill with nulls).

``epochs.parquet`` (`EPOCHS_SCHEMA`): ``study``, ``trial_key``, ``epoch`` (from 1), ``beta``,
``train_loss``, ``train_re``, ``train_kl``, ``val_loss``, ``val_re``, ``val_kl``,
``val_elbo_mc`` (the validation MC ELBO; null in rows written before it), ``seconds``, and (v2)
the validation diagnostics ``spread_ratio`` … ``lse_gap`` (models.records).

``test_ll.parquet`` (`TEST_LL_SCHEMA`): ``study``, ``trial_key``, ``image`` (test-set index),
``log_likelihood`` (importance-sampled), ``elbo_bound``, ``elbo_mc``, ``re``, ``kl_bound``,
``kl_mc``, ``kl_lse`` (v2) (nats, per image).

The trial folders are the source of truth: `consolidate` rebuilds the three files from them
(sorted by trial_key, epoch, image), so it is idempotent and a resumed study cannot duplicate a
row — a trial_key has one folder, and its latest attempt overwrote the earlier one's files.
Every write is atomic (`study.storage.write_bytes`). Nothing here imports torch or Ray.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from models.records import (
    EPOCH_COLUMNS,
    EPOCHS_TRIAL_SCHEMA,
    TEST_LL_TRIAL_SCHEMA,
)
from study.storage import (
    PLAN_FILE,
    RESULTS_DIR,
    TRIALS_DIR,
    exists,
    filesystem,
    join,
    read_json,
    write_json,
    write_table,
)

SCHEMA_VERSION = 2  # 2: test_kl_lse, the collapse diagnostics and ``collapsed`` (issue 8)
RECORD_FILE = "trial.json"
EPOCHS_FILE = "epochs.parquet"
TEST_LL_FILE = "test_ll.parquet"
TRIALS_FILE = "trials.parquet"
# A trial record's states, defined here once.
COMPLETED, ERROR, PRUNED = "COMPLETED", "ERROR", "PRUNED"
STATES = (COMPLETED, ERROR, PRUNED)

_STR, _F64, _I64, _BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()
_TS = pa.timestamp("us", tz="UTC")

# ModelConfig fields, in declaration order (a test checks this against models.config).
MODEL_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("arch", _STR), ("prior", _STR), ("likelihood", _STR), ("kl_estimator", _STR), ("M", _I64),
    ("pi", pa.list_(_F64)), ("K", _I64), ("latent_dim", _I64), ("hidden_dim", _I64),
    ("image_shape", pa.list_(_I64)), ("pseudo_init", _STR), ("pixel_layers", _I64),
    ("pixel_channels", _I64),
)
# TrainConfig fields, in declaration order; ``device`` is stored as ``device_requested``.
TRAIN_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("dataset", _STR), ("lr", _F64), ("batch_size", _I64), ("max_epochs", _I64),
    ("warmup_epochs", _I64), ("patience", _I64), ("seed", _I64), ("is_samples", _I64),
    ("eval_memory_mb", _I64), ("max_train_examples", _I64), ("max_test_examples", _I64),
    ("device_requested", _STR), ("data_dir", _STR), ("precision", _STR), ("compile", _BOOL),
)
TEST_METRICS = ("test_re", "test_kl", "test_kl_mc", "test_elbo_bound", "test_elbo_mc", "test_ll",
                "test_kl_lse")
# models.diagnostics.DIAGNOSTICS of the best epoch's weights, and the collapse flag from them.
DIAGNOSTIC_METRICS = ("spread_ratio", "members_used", "resp_perplexity", "bound_gap", "lse_gap")

TRIALS_SCHEMA = pa.schema([
    ("study", _STR), ("trial_key", _STR), ("state", _STR), ("error", _STR),
    *MODEL_COLUMNS,
    *TRAIN_COLUMNS,
    ("epochs_run", _I64), ("best_epoch", _I64), ("best_val_loss", _F64), ("stopped_early", _BOOL),
    *[(name, _F64) for name in TEST_METRICS],
    ("n_test", _I64), ("train_seconds", _F64), ("eval_seconds", _F64),
    *[(name, _F64) for name in DIAGNOSTIC_METRICS], ("collapsed", _BOOL),
    ("started_at", _TS), ("ended_at", _TS), ("attempts", _I64),
    ("node", _STR), ("device", _STR), ("gpu_memory_peak_mb", _F64),
    ("versions", _STR), ("git_rev", _STR), ("trial_dir", _STR),
    ("schema_version", _I64),
], metadata={"schema_version": str(SCHEMA_VERSION)})

# A trial folder's own tables (models.records), with the study and the trial's key in front.
EPOCHS_SCHEMA = pa.schema(
    [("study", _STR), ("trial_key", _STR), *EPOCHS_TRIAL_SCHEMA],
    metadata={"schema_version": str(SCHEMA_VERSION)},
)
TEST_LL_SCHEMA = pa.schema(
    [("study", _STR), ("trial_key", _STR), *TEST_LL_TRIAL_SCHEMA],
    metadata={"schema_version": str(SCHEMA_VERSION)},
)
_TIMESTAMPS = ("started_at", "ended_at")
# STUDY/plan.parquet: one row per planned trial, its key and its flat config (TrainConfig's
# ``device`` as ``device_requested``, as in trials.parquet); empty for an open search.
PLAN_SCHEMA = pa.schema(
    [("study", _STR), ("trial_key", _STR), *MODEL_COLUMNS, *TRAIN_COLUMNS],
    metadata={"schema_version": str(SCHEMA_VERSION)},
)


# ----------------------------------------------------------------------------------------------
# Trial records (trial.json)


def now_utc() -> datetime:
    return datetime.now(UTC)


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
) -> dict[str, Any]:
    """The record of one trial (a row of trials.parquet as JSON-ready values).

    ``config`` is the flat trial configuration (``TrialConfig.to_flat()``); ``metrics`` the dict
    `models.trial.run_trial` returns (absent for a failed or pruned trial, whose ``epochs_run``,
    ``best_epoch`` and ``best_val_loss`` then come from ``epochs``, the rows reported so far).
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


def device_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """The end summary's lines on where trials ran: per device, the trials and (on GPUs) the
    largest and mean peak of GPU memory per trial."""
    by_device: dict[str, list[float | None]] = {}
    for record in records:
        if record.get("device"):
            by_device.setdefault(str(record["device"]), []).append(
                record.get("gpu_memory_peak_mb"))
    lines = []
    for device, peaks in sorted(by_device.items()):
        line = f"device     {device}: {len(peaks)} trial(s)"
        known = [p for p in peaks if p is not None]
        if known:
            line += (f", GPU memory peak per trial max {max(known):.0f} MiB, "
                     f"mean {sum(known) / len(known):.0f} MiB")
        lines.append(line)
    return lines


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


def write_plan(study_dir: str, study: str, plan: Sequence[dict[str, Any]]) -> None:
    """Write ``STUDY/plan.parquet`` (atomically): one row per planned trial (``plan``: flat
    configs with their ``trial_key``), so that readers need no spec to know the plan."""
    fs, root = filesystem(study_dir)
    rows = [{"study": study, "trial_key": t["trial_key"], **_config_columns(t)} for t in plan]
    write_table(fs, join(root, PLAN_FILE), pa.Table.from_pylist(rows, schema=PLAN_SCHEMA))


def read_plan(study_dir: str) -> list[dict[str, Any]]:
    """The planned trials of ``STUDY/plan.parquet`` as rows (``[]`` for an open search)."""
    fs, root = filesystem(study_dir)
    return pq.read_table(join(root, PLAN_FILE), filesystem=fs).to_pylist()


def write_record(fs: pafs.FileSystem, trial_dir: str, record: dict[str, Any]) -> None:
    """Write ``trial.json`` into the trial's folder (atomically; the latest attempt wins)."""
    write_json(fs, join(trial_dir, RECORD_FILE), record)


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


METRICS_FILE = "metrics.json"  # models.trial's summary of a finished trial


def trial_damage(fs: pafs.FileSystem, trial_dir: str) -> dict[str, str]:
    """The files of a trial folder that exist but cannot be read (torn by a crash mid-write,
    truncated, garbage): file name → why. Reads only footers and small JSON files."""
    damage: dict[str, str] = {}
    for name in (RECORD_FILE, METRICS_FILE):
        path = join(trial_dir, name)
        if exists(fs, path):
            try:
                obj = read_json(fs, path)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                damage[name] = _first_line(exc)
    for name in (EPOCHS_FILE, TEST_LL_FILE):
        path = join(trial_dir, name)
        if exists(fs, path):
            try:
                pq.read_metadata(path, filesystem=fs)
            except (OSError, ValueError, pa.ArrowException) as exc:
                damage[name] = _first_line(exc)
    return damage


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:200]


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


# ----------------------------------------------------------------------------------------------
# Tables


def records_table(records: Iterable[dict[str, Any]]) -> pa.Table:
    """trials.parquet's table from records (cast to `TRIALS_SCHEMA`; missing fields null)."""
    rows = []
    for record in records:
        row = {name: record.get(name) for name in TRIALS_SCHEMA.names}
        for name in _TIMESTAMPS:
            if isinstance(row[name], str):
                row[name] = datetime.fromisoformat(row[name])
        row["schema_version"] = SCHEMA_VERSION
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=TRIALS_SCHEMA)


def _trial_table(fs: pafs.FileSystem, path: str, study: str, key: str,
                 schema: pa.Schema) -> pa.Table | None:
    """A trial's own Parquet file with ``study`` and ``trial_key`` added, cast to ``schema``."""
    if not exists(fs, path):
        return None
    table = pq.read_table(path, filesystem=fs)
    n = table.num_rows
    columns = {"study": pa.array([study] * n, _STR), "trial_key": pa.array([key] * n, _STR)}
    for f in schema:
        if f.name in columns:
            continue
        if f.name in table.column_names:
            columns[f.name] = table[f.name].cast(f.type)
        else:
            columns[f.name] = pa.nulls(n, f.type)
    return pa.table(columns, schema=schema)


def _concat(tables: list[pa.Table], schema: pa.Schema, sort: list[tuple[str, str]]) -> pa.Table:
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables).sort_by(sort).replace_schema_metadata(schema.metadata)


@dataclass
class Consolidated:
    """What `consolidate` wrote: the number of rows of each file, trials by state."""

    trials: int = 0
    epochs: int = 0
    test_ll: int = 0
    states: dict[str, int] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    # trial_key → one line naming its torn files: such a trial is left out (resume re-runs it)
    damaged: dict[str, str] = field(default_factory=dict)


def damage_line(key: str, damage: dict[str, str]) -> str:
    """One line naming a trial's torn files."""
    files = "; ".join(f"{name} ({why})" for name, why in sorted(damage.items()))
    return (f"trial {key}: cannot read {files}; the trial is left out of the results and "
            "`gmmpvae resume` re-runs it")


def consolidate(study_dir: str, study: str | None = None) -> Consolidated:
    """Rebuild ``STUDY/results/{trials,epochs,test_ll}.parquet`` from the trial folders.

    One row per trial_key that has a record (trials still running have none yet); the epochs
    and test images of each such trial. Idempotent; each file is replaced atomically.
    """
    fs, root = filesystem(study_dir)
    damaged: dict[str, str] = {}
    records = []
    for folder in trial_folders(fs, root):
        damage = trial_damage(fs, folder)
        if damage:  # torn by a crash: named, left out, re-run by resume
            damaged[folder.rsplit("/", 1)[-1]] = damage_line(folder.rsplit("/", 1)[-1], damage)
            continue
        record = read_record(fs, folder)
        if record is not None:
            records.append(record)
    records.sort(key=lambda r: r["trial_key"])
    epochs, test_ll = [], []
    for record in records:
        key, name = record["trial_key"], study or record["study"]
        folder = join(root, TRIALS_DIR, key)
        e = _trial_table(fs, join(folder, EPOCHS_FILE), name, key, EPOCHS_SCHEMA)
        if e is not None:
            epochs.append(e)
        if record["state"] == COMPLETED:
            t = _trial_table(fs, join(folder, TEST_LL_FILE), name, key, TEST_LL_SCHEMA)
            if t is not None:
                test_ll.append(t)
        if study is not None:
            record["study"] = study
    trials_t = records_table(records)
    epochs_t = _concat(epochs, EPOCHS_SCHEMA, [("trial_key", "ascending"), ("epoch", "ascending")])
    test_t = _concat(test_ll, TEST_LL_SCHEMA, [("trial_key", "ascending"), ("image", "ascending")])
    out = join(root, RESULTS_DIR)
    write_table(fs, join(out, TRIALS_FILE), trials_t)
    write_table(fs, join(out, EPOCHS_FILE), epochs_t)
    write_table(fs, join(out, TEST_LL_FILE), test_t)
    states: dict[str, int] = {}
    for record in records:
        states[record["state"]] = states.get(record["state"], 0) + 1
    return Consolidated(trials_t.num_rows, epochs_t.num_rows, test_t.num_rows, states, records,
                        damaged)
