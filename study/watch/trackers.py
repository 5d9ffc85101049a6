"""The writers of experiment trackers: TensorBoard, MLflow, Weights & Biases.

One interface, three implementations, two feeders: the driver's Tune callback
(`study.tune.trackers`, live, from what the trials report) and ``gmmpvae export`` (replayed
from a finished study's Parquet files). Either way a tracker sees, per trial (named by its
stable ``trial_key``):

- ``start(key, params)`` once per driver that runs the trial (a resumed study's driver calls
  it again: the same run is reopened, never a new one — TensorBoard: the same run folder;
  MLflow: the run tagged with the key; W&B: the run id derived from study and key);
- ``log(key, step, metrics)`` per epoch (``step`` = the epoch);
- ``end(key, step, final, state)`` with the test metrics and the trial's state.

What is logged: `epoch_metrics` (losses, RE, KL, β, epoch seconds and the collapse
diagnostics) and `final_metrics` (IS log-likelihood, the KL estimates U, MC and LSE, the
bounds, the best validation loss) under the tags of `EPOCH_TAGS` / `FINAL_TAGS`, and
`hparams` (M, K, π, arch, prior, estimator, seed, …) as TensorBoard's HParams, MLflow params,
W&B config. Nothing here imports Ray; each tracker's package (an optional extra) is imported
when that tracker is opened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from typing import Any, Protocol

from study.logs import quiet_loggers
from study.watch import tracking

# column of an epoch row / a trial's final result -> tracker tag
EPOCH_TAGS = {
    "train_loss": "train/loss", "train_re": "train/re", "train_kl": "train/kl",
    "val_loss": "val/loss", "val_re": "val/re", "val_kl": "val/kl", "beta": "beta",
    "seconds": "epoch_seconds",
    "spread_ratio": "collapse/spread_ratio", "members_used": "collapse/members_used",
    "resp_perplexity": "collapse/resp_perplexity", "bound_gap": "collapse/bound_gap",
    "lse_gap": "collapse/lse_gap",
}
FINAL_TAGS = {
    "test_ll": "test/ll", "test_re": "test/re", "test_kl": "test/kl",
    "test_kl_mc": "test/kl_mc", "test_kl_lse": "test/kl_lse",
    "test_elbo_bound": "test/elbo_bound", "test_elbo_mc": "test/elbo_mc",
    "best_val_loss": "final/best_val_loss", "epochs_run": "final/epochs_run",
}
HPARAMS = ("dataset", "arch", "prior", "M", "K", "pi", "kl_estimator", "seed", "latent_dim",
           "lr", "max_epochs")
KEY_TAG = "gmmpvae.trial_key"
STUDY_TAG = "gmmpvae.study"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _tagged(row: dict[str, Any], tags: dict[str, str]) -> dict[str, float]:
    out = {}
    for column, tag in tags.items():
        value = _number(row.get(column))
        if value is not None:
            out[tag] = value
    return out


def epoch_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The tracked values of one epoch (a Tune result or an epochs.parquet row); non-finite
    and missing values are left out."""
    return _tagged(row, EPOCH_TAGS)


def final_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The tracked values of a finished trial (its last Tune result or its trials row)."""
    return _tagged(row, FINAL_TAGS)


def hparams(config: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """The hyperparameters shown by the trackers, from a flat trial config: numbers and
    strings as they are, π as its JSON list, absent ones (K of the standard prior) as "-"."""
    out: dict[str, str | int | float | bool] = {}
    for name in HPARAMS:
        value = config.get(name)
        if isinstance(value, list | tuple):
            out[name] = json.dumps([round(float(v), 6) for v in value])
        elif value is None:
            out[name] = "-"
        else:
            out[name] = value
    return out


class Tracker(Protocol):
    def start(self, key: str, params: dict[str, Any]) -> None: ...
    def log(self, key: str, step: int, metrics: dict[str, float]) -> None: ...
    def end(self, key: str, step: int, final: dict[str, float], state: str) -> None: ...
    def close(self) -> None: ...


# ----------------------------------------------------------------------------- TensorBoard

class TensorBoardTracker:
    """One run folder per trial, ``<root>/<trial_key>/`` (a resumed trial appends another
    event file to it: TensorBoard reads a folder's files as one run). Scalars per epoch;
    HParams (experiment, session start and end summaries) in the same folder, so the HParams
    view lists each trial with its final metrics."""

    def __init__(self, root: str, flush_secs: int = 10) -> None:
        from tensorboardX import SummaryWriter

        self._writer_cls, self.root, self._flush = SummaryWriter, root, flush_secs
        self._writers: dict[str, Any] = {}
        self._params: dict[str, dict[str, Any]] = {}

    def _writer(self, key: str) -> Any:
        if key not in self._writers:
            self._writers[key] = self._writer_cls(logdir=os.path.join(self.root, key),
                                                  flush_secs=self._flush)
        return self._writers[key]

    def start(self, key: str, params: dict[str, Any]) -> None:
        self._writer(key)
        self._params[key] = params

    def log(self, key: str, step: int, metrics: dict[str, float]) -> None:
        writer = self._writer(key)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, global_step=step)

    def end(self, key: str, step: int, final: dict[str, float], state: str) -> None:
        from tensorboardX.summary import hparams as hparams_summaries

        writer = self._writer(key)
        for tag, value in final.items():
            writer.add_scalar(tag, value, global_step=step)
        # The same hyperparameters each time (a re-run trial writes them again, identical);
        # its state is the text "state" beside them.
        metric_tags = {tag: final.get(tag, math.nan) for tag in FINAL_TAGS.values()}
        exp, ssi, sei = hparams_summaries(self._params.get(key, {}), metric_tags)
        writer.add_text("state", state, global_step=step)
        for summary in (exp, ssi, sei):
            writer.file_writer.add_summary(summary, step)
        writer.close()  # one open file per running trial, not per trial of the study
        del self._writers[key]

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


# ----------------------------------------------------------------------------- MLflow

# MLflow's and Alembic's INFO lines on setting up their database, off while a tracker opens.
_MLFLOW_LOGGERS = ("mlflow", "mlflow.store.db.utils", "alembic")


class MlflowTracker:
    """One MLflow run per trial in the experiment named after the study, found again by its
    ``gmmpvae.trial_key`` tag when a resumed study reopens it (MlflowClient only: no global
    active run, so concurrent trials never mix). A trial's epochs are sent in one batch at
    most every ``flush_secs`` (and at its end): one SQLite write costs tens of milliseconds of
    the driver's time, whatever it holds."""

    def __init__(self, uri: str, study: str, artifacts: str | None = None,
                 flush_secs: float = 5.0) -> None:
        with quiet_loggers(_MLFLOW_LOGGERS, logging.WARNING):
            from mlflow import MlflowClient

            self.client = MlflowClient(tracking_uri=uri)
            experiment = self.client.get_experiment_by_name(study)
            if experiment is None:
                experiment_id = self.client.create_experiment(study, artifact_location=artifacts)
            else:
                experiment_id = experiment.experiment_id
        self.experiment_id, self.study, self.flush_secs = experiment_id, study, flush_secs
        self._runs: dict[str, str] = {}
        self._pending: dict[str, list[Any]] = {}
        self._flushed: dict[str, float] = {}

    def run_id(self, key: str) -> str:
        """The trial's run: the one already tagged with its key, or a new one."""
        if key in self._runs:
            return self._runs[key]
        found = self.client.search_runs([self.experiment_id],
                                        filter_string=f"tags.`{KEY_TAG}` = '{key}'",
                                        max_results=1)
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run_id = self.client.create_run(self.experiment_id, run_name=key,
                                            tags={KEY_TAG: key, STUDY_TAG: self.study}
                                            ).info.run_id
        self._runs[key] = run_id
        return run_id

    def start(self, key: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        run_id = self.run_id(key)
        logged = self.client.get_run(run_id).data.params
        fresh = [Param(k, str(v)) for k, v in params.items() if k not in logged]
        if fresh:
            self.client.log_batch(run_id, params=fresh)

    def log(self, key: str, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = _now_ms()
        self._pending.setdefault(key, []).extend(
            Metric(tag, value, stamp, step) for tag, value in metrics.items())
        if time.monotonic() - self._flushed.get(key, -math.inf) >= self.flush_secs:
            self.flush(key)

    def flush(self, key: str) -> None:
        """Send the trial's buffered metrics (MLflow takes at most 1000 per batch)."""
        pending = self._pending.pop(key, [])
        run_id = self.run_id(key)
        for start in range(0, len(pending), 1000):
            self.client.log_batch(run_id, metrics=pending[start:start + 1000])
        self._flushed[key] = time.monotonic()

    def end(self, key: str, step: int, final: dict[str, float], state: str) -> None:
        self.log(key, step, final)
        self.flush(key)
        run_id = self.run_id(key)
        self.client.set_tag(run_id, "gmmpvae.state", state)
        self.client.set_terminated(run_id, "FINISHED" if state == "COMPLETED" else
                                   "KILLED" if state == "PRUNED" else "FAILED")

    def close(self) -> None:
        for key in list(self._pending):
            self.flush(key)
        self._runs.clear()


def _now_ms() -> int:
    return int(time.time() * 1000)


# ----------------------------------------------------------------------------- W&B

class WandbTracker:
    """One W&B run per trial, its id derived from the study and the key (so a resumed study
    continues it: ``resume="allow"``); offline mode writes ``offline-run-*`` folders under
    ``<root>/wandb/`` for ``wandb sync`` and needs no network. Several runs live at once in
    the driver (``reinit="create_new"``)."""

    def __init__(self, root: str, project: str, mode: str, study: str) -> None:
        import wandb

        self._wandb, self.root, self.project, self.mode, self.study = (
            wandb, root, project, mode, study)
        os.makedirs(root, exist_ok=True)
        self._runs: dict[str, Any] = {}

    def run_name(self, key: str) -> str:
        return run_id(self.study, key)

    def _run(self, key: str, params: dict[str, Any] | None = None) -> Any:
        if key not in self._runs:
            settings = self._wandb.Settings(silent=True, console="off", x_disable_stats=True)
            self._runs[key] = self._wandb.init(
                project=self.project, id=self.run_name(key), name=key, group=self.study,
                mode=self.mode, dir=self.root, resume="allow", reinit="create_new",
                config=params or {}, allow_val_change=True, settings=settings)
        return self._runs[key]

    def start(self, key: str, params: dict[str, Any]) -> None:
        self._run(key, params)

    def log(self, key: str, step: int, metrics: dict[str, float]) -> None:
        self._run(key).log({**metrics, "epoch": step})

    def end(self, key: str, step: int, final: dict[str, float], state: str) -> None:
        run = self._run(key)
        run.log({**final, "epoch": step})
        run.summary["state"] = state
        run.finish(exit_code=0 if state == "COMPLETED" else 1)
        del self._runs[key]

    def close(self) -> None:
        for run in self._runs.values():
            run.finish()
        self._runs.clear()


def run_id(study: str, key: str) -> str:
    """A W&B run id of at most 64 safe characters, the same for the same study and key."""
    digest = hashlib.sha1(f"{study}/{key}".encode()).hexdigest()[:16]
    return f"{key[:40]}-{digest}".replace("/", "-")


# ----------------------------------------------------------------------------- assembly

def open_trackers(section: tracking.TrackingSection, storage: str, study: str,
                  only: tuple[str, ...] | None = None,
                  tensorboard_root: str | None = None) -> list[Any]:
    """The trackers a ``[tracking]`` section turns on (``only``: a subset, for export)."""
    names = only if only is not None else section.enabled
    tracking.check_available(names)
    out: list[Any] = []
    for name in names:
        if name == "tensorboard":
            out.append(TensorBoardTracker(tensorboard_root or tracking.tensorboard_dir(storage)))
        elif name == "mlflow":
            out.append(MlflowTracker(tracking.mlflow_uri(section.mlflow, storage), study,
                                     os.path.join(os.path.abspath(storage),
                                                  tracking.MLFLOW_ARTIFACTS)))
        elif name == "wandb":
            out.append(WandbTracker(tracking.wandb_dir(storage), section.wandb_project or study,
                                    section.wandb_mode, study))
    return out
