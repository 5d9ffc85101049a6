"""Damage a crash leaves in a trial folder, detected and named (never silently dropped):
a torn ``trial.json`` / ``metrics.json``, a truncated ``epochs.parquet`` / ``test_ll.parquet``.
Readers name it (`damage_line`); `study.recovery.repair` sets such files aside.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from models.records import METRICS_FILE
from study.store.layout import exists, join, read_json
from study.store.schemas import EPOCHS_FILE, RECORD_FILE, TEST_LL_FILE


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


def damage_line(key: str, damage: dict[str, str]) -> str:
    """One line naming a trial's torn files."""
    files = "; ".join(f"{name} ({why})" for name, why in sorted(damage.items()))
    return (f"trial {key}: cannot read {files}; the trial is left out of the results and "
            "`gmmpvae resume` re-runs it")

