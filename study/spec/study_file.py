"""A study file (TOML) or a preset → a `StudySpec`, with command-line overrides; a study
folder → its saved spec (`load_study`).

``load_spec(source, overrides)`` reads ``source`` — a path to a ``.toml`` file, or the name of a
preset in ``study/presets/`` (``list_presets()``) — applies command-line overrides
(``{"budget.max_epochs": 3}``; ``None`` values are skipped) and validates the result with
`study.spec.from_raw` (every field is documented in docs/STUDY_FILE.md). ``OVERRIDE_FLAGS``
and ``FIELD_HELP`` are the flags of ``gmmpvae run``.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import search_spaces
from models.config import DATASETS
from study import store
from study.errors import UsageError
from study.spec.sections import KEYS, SAMPLERS
from study.spec.study_spec import StudySpec, from_raw
from study.store import one_line

# (flag, section.field, type) for `gmmpvae run`; FIELD_HELP has a line of help for each.
OVERRIDE_FLAGS: list[tuple[str, str, type]] = [
    ("--name", "study.name", str),
    ("--storage", "study.storage", str),
    ("--optuna-storage", "study.optuna_storage", str),
    ("--address", "study.address", str),
    ("--connect-timeout", "study.connect_timeout", float),
    ("--dataset", "data.dataset", str),
    ("--data-dir", "data.data_dir", str),
    ("--space", "search.space", str),
    ("--sampler", "search.sampler", str),
    ("--seeds", "search.seeds", int),
    ("--num-samples", "search.num_samples", int),
    ("--sampler-seed", "search.sampler_seed", int),
    ("--max-epochs", "budget.max_epochs", int),
    ("--warmup-epochs", "budget.warmup_epochs", int),
    ("--patience", "budget.patience", int),
    ("--is-samples", "budget.is_samples", int),
    ("--max-train-examples", "budget.max_train_examples", int),
    ("--max-test-examples", "budget.max_test_examples", int),
    ("--precision", "budget.precision", str),
    ("--scheduler", "scheduler.kind", str),
    ("--cpus-per-trial", "resources.cpus_per_trial", float),
    ("--gpus-per-trial", "resources.gpus_per_trial", float),
    ("--max-concurrent", "resources.max_concurrent", int),
    ("--retries", "failure.retries", int),
    ("--stranded-grace", "failure.stranded_grace", float),
    ("--outage-grace", "failure.outage_grace", float),
]
FIELD_HELP: dict[str, str] = {
    "study.name": "study name (folder-safe; default: the file stem)",
    "study.storage": "results folder or pyarrow URI (default: studies/<name>)",
    "study.optuna_storage": "Optuna storage: RDB URL or .journal path (default: journal file)",
    "study.address": "Ray cluster to join: auto or host:port (default: start Ray here)",
    "study.connect_timeout": "seconds to wait for the cluster at --address (default 60)",
    "data.dataset": "dataset: " + ", ".join(DATASETS),
    "data.data_dir": "data folder (default: $GMMPVAE_DATA_DIR or the per-user cache)",
    "search.space": "search space: " + ", ".join(search_spaces.names()),
    "search.sampler": "Optuna sampler: " + ", ".join(SAMPLERS),
    "search.seeds": "seeds per configuration (grids)",
    "search.num_samples": "trials to sample (open spaces)",
    "search.sampler_seed": "seed of the Optuna sampler",
    "budget.max_epochs": "most epochs per trial",
    "budget.warmup_epochs": "KL warm-up epochs",
    "budget.patience": "early-stopping look-ahead in epochs",
    "budget.is_samples": "importance samples for the test log-likelihood",
    "budget.max_train_examples": "use only the first N training images (0: all)",
    "budget.max_test_examples": "use only the first N validation/test images (0: all)",
    "budget.precision": "network precision: fp32, bf16, or tf32 (CUDA only)",
    "scheduler.kind": "trial scheduler: fifo or asha",
    "resources.cpus_per_trial": "CPUs per trial",
    "resources.gpus_per_trial": "GPUs per trial (fractions allowed)",
    "resources.max_concurrent": "most trials at once (default: as many as fit)",
    "failure.retries": "retries of a failed trial",
    "failure.stranded_grace": "seconds to wait while no node can hold a trial, then end the "
                              "study, resumable (default 600)",
    "failure.outage_grace": "seconds to keep retrying an unreachable object store or Optuna "
                            "database, then stop the study, resumable (default 120)",
}


def list_presets() -> list[str]:
    """Names of the presets shipped in ``study/presets/``."""
    folder = resources.files("study").joinpath("presets")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read(source: str) -> tuple[str, str, str]:
    """(TOML text, origin for messages, default study name) of a file path or a preset name."""
    path = Path(source).expanduser()
    if source.endswith(".toml") or os.sep in source or path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path), path.stem
        except OSError as exc:
            raise ValueError(one_line(f"{path}: cannot read the study file: "
                                       f"{exc.strerror or exc}")) from None
    presets = list_presets()
    if source not in presets:
        raise ValueError(f"unknown preset {source!r}: expected a .toml file path or one of "
                         f"{', '.join(presets)}")
    text = resources.files("study").joinpath("presets", f"{source}.toml").read_text("utf-8")
    return text, f"preset '{source}'", source


def _apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> set[str]:
    """Write ``{"section.field": value}`` into ``raw`` (None values skipped); the set of the
    fields written."""
    written = set()
    for key, value in overrides.items():
        if value is None:
            continue
        parts = key.split(".")
        if len(parts) < 2 or parts[0] not in KEYS or parts[1] not in KEYS[parts[0]]:
            flags = ", ".join(f for f, _, _ in OVERRIDE_FLAGS)
            raise ValueError(f"unknown override {key!r}: expected section.field of a study "
                             f"file, such as the fields of {flags}")
        table = raw
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ValueError(f"command line: cannot set {key}: {part} is not a table")
        table[parts[-1]] = value
        written.add(key)
    return written


def load_spec(source: str, overrides: dict[str, Any] | None = None) -> StudySpec:
    """The validated study of ``source`` (a .toml path or a preset name) with ``overrides``
    (``{"budget.max_epochs": 3}``) applied; ``ValueError`` of one line on any problem."""
    text, origin, stem = _read(str(source))
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(one_line(f"{origin}: malformed TOML: {exc}")) from None
    overridden = _apply_overrides(raw, dict(overrides or {}))
    return from_raw(raw, origin, overridden, default_name=stem)


def load_study(study_dir: str) -> tuple[StudySpec, dict[str, Any]]:
    """The spec and run info saved in ``study.json`` of a study folder."""
    fs, root = store.filesystem(study_dir)
    path = store.join(root, store.STUDY_FILE)
    if not store.exists(fs, path):
        raise UsageError(f"{study_dir} is not a study folder (no {store.STUDY_FILE})")
    try:
        info = store.read_json(fs, path)
        raw = info["spec"]
    except (ValueError, KeyError, TypeError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise UsageError(one_line(f"{path} is damaged ({type(exc).__name__}: {exc}): it is "
                                  "written once when the study starts; restore it from a "
                                  "backup or start the study afresh")) from None
    spec = StudySpec.from_dict(raw, origin=path)
    if store.filesystem(spec.storage)[1] != root:
        raise UsageError(f"{study_dir} was created as {spec.storage}: a study is resumed "
                         f"where it was created")
    return spec, info
