"""The consolidated dataset ``STUDY/results/{trials,epochs,test_ll}.parquet``, rebuilt from
the trial folders.

The trial folders are the source of truth: `consolidate` rebuilds the three files from them
(sorted by trial_key, epoch, image), so it is idempotent and a resumed study cannot duplicate a
row — a trial_key has one folder, and its latest attempt overwrote the earlier one's files.
A trial_key is one configuration at one budget, so every budget keeps its rows, once each; a
carried trial (``carried_from``) gets its source's epochs and test images under its own key.
``config_key`` is derived from each row's config columns (`search_spaces.config_key`), so the
trial folders of earlier schema versions get it too.
Every write is atomic (`study.store.layout.write_bytes`). A trial with torn files is named
and left out (`study.store.damage`). Nothing here imports torch or Ray.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from search_spaces import config_key
from study.store.damage import damage_line, trial_damage
from study.store.layout import RESULTS_DIR, TRIALS_DIR, StudyFolder, exists, join, write_table
from study.store.records import read_record, record_config, trial_folders
from study.store.schemas import (
    COMPLETED,
    EPOCHS_FILE,
    EPOCHS_SCHEMA,
    SCHEMA_VERSION,
    TEST_LL_FILE,
    TEST_LL_SCHEMA,
    TRIALS_FILE,
    TRIALS_SCHEMA,
)

_STR = pa.string()
_TIMESTAMPS = ("started_at", "ended_at")

# ----------------------------------------------------------------------------------------------
# Tables


def records_table(records: Iterable[dict[str, Any]]) -> pa.Table:
    """trials.parquet's table from records (cast to `TRIALS_SCHEMA`; missing fields null)."""
    rows = []
    for record in records:
        row = {name: record.get(name) for name in TRIALS_SCHEMA.names}
        row["config_key"] = config_key(record_config(record))
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


def consolidate(study_dir: StudyFolder | str, study: str | None = None) -> Consolidated:
    """Rebuild ``STUDY/results/{trials,epochs,test_ll}.parquet`` from the trial folders.

    One row per trial_key that has a record (trials still running have none yet); the epochs
    and test images of each such trial. Idempotent; each file is replaced atomically.
    """
    folder = StudyFolder.of(study_dir)
    fs, root = folder.fs, folder.root
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
    # A carried trial's files are its source's: left out with it when the source is torn.
    for record in records:
        source = record.get("carried_from")
        if source in damaged:
            damaged[record["trial_key"]] = (
                f"trial {record['trial_key']}: carries the result of {source}, whose files are "
                "torn; both are left out of the results")
    records = [r for r in records if r["trial_key"] not in damaged]
    records.sort(key=lambda r: r["trial_key"])
    epochs, test_ll = [], []
    for record in records:
        key, name = record["trial_key"], study or record["study"]
        folder = join(root, TRIALS_DIR, record.get("carried_from") or key)
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

