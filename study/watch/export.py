"""Replay a finished study's Parquet files into TensorBoard or MLflow (``gmmpvae export``).

The same trackers as a live study (`study.watch.trackers`), fed from ``results/trials.parquet``
(one row per trial: its configuration, state and test metrics) and ``results/epochs.parquet``
(its epochs): per trial ``start`` with its hyperparameters, ``log`` per epoch, ``end``. So an
exported study looks like one tracked live: the same run names (the trial keys), tags, steps
and HParams. A trial the target already holds (a TensorBoard run folder of that key; an
MLflow run tagged with it) is skipped, so exporting twice adds nothing. Nothing here imports
Ray.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import pyarrow.parquet as pq

from study import store
from study.errors import UsageError
from study.watch import trackers, tracking

TARGETS = ("tensorboard", "mlflow")


def read_tables(study_dir: str) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(trials rows, trial_key → its epoch rows in epoch order) from ``results/``."""
    fs, root = store.filesystem(study_dir)
    folder = store.join(root, store.RESULTS_DIR)
    paths = {name: store.join(folder, name) for name in (store.TRIALS_FILE, store.EPOCHS_FILE)}
    if not store.exists(fs, paths[store.TRIALS_FILE]):
        raise UsageError(f"{study_dir} has no {store.RESULTS_DIR}/{store.TRIALS_FILE}: run "
                         f"`gmmpvae status {study_dir}` to consolidate its trials first")
    trials = pq.read_table(paths[store.TRIALS_FILE], filesystem=fs).to_pylist()
    epochs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if store.exists(fs, paths[store.EPOCHS_FILE]):
        for row in pq.read_table(paths[store.EPOCHS_FILE], filesystem=fs).to_pylist():
            epochs[row["trial_key"]].append(row)
    for rows in epochs.values():
        rows.sort(key=lambda r: r["epoch"])
    return trials, dict(epochs)


def _held(target: str, sink: Any, key: str) -> bool:
    """Whether the target already holds this trial's run."""
    if target == "tensorboard":
        return os.path.isdir(os.path.join(sink.root, key))
    found = sink.client.search_runs([sink.experiment_id],
                                    filter_string=f"tags.`{trackers.KEY_TAG}` = '{key}'",
                                    max_results=1)
    return bool(found)


def export(study_dir: str, study: str, target: str, *, out: str | None = None,
           mlflow_uri: str | None = None) -> tuple[int, int]:
    """Write every trial of the study to ``target``; (trials written, trials skipped)."""
    if target not in TARGETS:
        raise UsageError(f"--to {target!r}: expected one of {', '.join(TARGETS)}")
    tracking.check_available([target])
    trials, epochs = read_tables(study_dir)
    section = tracking.TrackingSection(tensorboard=target == "tensorboard",
                                       mlflow=(mlflow_uri or "") if target == "mlflow" else None)
    local = store.local_path(study_dir)
    [sink] = trackers.open_trackers(section, local, study, only=(target,),
                                    tensorboard_root=out)
    written = skipped = 0
    try:
        for row in trials:
            key = row["trial_key"]
            if _held(target, sink, key):
                skipped += 1
                continue
            sink.start(key, trackers.hparams(row))
            rows = epochs.get(key, [])
            for epoch_row in rows:
                sink.log(key, int(epoch_row["epoch"]), trackers.epoch_metrics(epoch_row))
            step = int(row.get("epochs_run") or (rows[-1]["epoch"] if rows else 0))
            sink.end(key, step, trackers.final_metrics(row), str(row["state"]))
            written += 1
    finally:
        sink.close()
    return written, skipped
