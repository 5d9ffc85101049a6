"""The Ray Tune trainable of a study: one config dict in, one trained and evaluated GMMpVAE out.

`train_trial(config)` is a plain function of the config dict Tune hands it (Ray Tune's function
API). The dict is the trial's flat configuration (``TrialConfig.to_flat()`` fields), its
``trial_key``, and under ``_study`` what every trial of the study shares (`study_context`).
It calls small helpers, in order:

0. a trial whose folder already holds a COMPLETED or PRUNED record (it finished before its
   driver was lost, unbeknown to Tune) is not run again: its record is reported;
1. `_restore`: when Tune restarts the trial from a checkpoint (a retry after a crash or a lost
   node, or ``gmmpvae resume`` after a lost driver), ``tune.get_checkpoint()`` holds the last
   epoch's training checkpoint; it is put where the trainer resumes from
   (``<trial folder>/checkpoint/checkpoint.pt``) with the epochs reported so far. Without one,
   the trial folder's own checkpoint is used (a trial its lost driver had started), except
   after an ERROR record: an errored trial that Tune restarts starts from scratch;
2. the trial function (`models.trial.run_trial` by default) trains and evaluates, calling back
   once per epoch: `_Reporter` reports the epoch's metrics to Tune with a checkpoint
   (``checkpoint.pt`` from the trainer plus ``meta.json``: first start, attempts, epoch rows);
   the attempt's running marker (``running.json``, `study.store.running`: what ``gmmpvae
   status`` reads instead of Tune's state) is written before and refreshed each epoch;
3. the trial writes its record (``trial.json``, `study.store`) into its folder of the study's
   storage as it ends — ``COMPLETED``; or ``ERROR`` on a non-finite loss (recorded and returned:
   a deterministic NaN is not retried) or on an exception (recorded, then re-raised so that Tune
   retries it from its last checkpoint; a later attempt overwrites the record) — and reports
   a final result (``trial_state``, test metrics) that the Optuna searcher reads.

A trial whose study storage is a URI (no shared file system) trains in a local scratch folder
and copies it to ``STUDY/trials/<trial_key>/`` as it ends. A call to that store that fails
(each is bounded to seconds, `study.store.outage.bounded`) raises, so that Tune retries the
trial from its last checkpoint (the record is written last: a half-uploaded folder is never
taken for a result); see `study_folder`.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray.util
import torch
from ray import tune

from models.checkpoint import CHECKPOINT_FILE, atomic_write, atomic_write_text
from models.config import TrialConfig
from models.data import DataError
from models.training import NonFiniteLossError
from search_spaces import KEY_FIELD
from study import store
from study.patience import OUTAGE_GRACE
from study.provenance import resolve_function, versions
from study.store import COMPLETED, ERROR, PRUNED

CONTEXT_KEY = "_study"
META_FILE = "meta.json"
# Result keys: TIME_ATTR is the epoch as the scheduler sees it. It is left out of a trial's last
# epoch, so that ASHA never stops a trial that has finished training and is about to be
# evaluated; STATE_KEY marks a trial's final result (COMPLETED, ERROR, or PRUNED re-reported).
TIME_ATTR = "scheduler_epoch"
STATE_KEY = "trial_state"


def study_context(*, name: str, storage: str, git_rev: str, trial_function: str, metric: str,
                  cpus_per_trial: float, outage_grace: float = OUTAGE_GRACE) -> dict[str, Any]:
    """What every trial of a study shares (the ``_study`` entry of its config)."""
    return {"name": name, "storage": storage, "git_rev": git_rev,
            "trial_function": trial_function, "metric": metric,
            "threads": max(1, int(cpus_per_trial)), "outage_grace": float(outage_grace)}


def study_folder(ctx: dict[str, Any], announce: Callable[[str], None] | None = None
                 ) -> store.StudyFolder:
    """The study's folder as the driver's callbacks write it (``announce``: the driver's
    warning): on an object store, every call waits out an outage for at most the study's
    ``outage_grace`` (`study.store.StudyFolder.waiting_out`). A trial (no ``announce``) gets the
    store's bounded client itself: a call that fails raises, and Tune retries the trial from
    its last checkpoint (``[failure] retries``); Tune's own checkpoint uploads are patient
    (`study.tune.tuner.tune_storage`). Measured: real trials writing through the patient
    filesystem ran the quickstart grid on SeaweedFS ≈ 10× slower (6 of 7 trials in 240 s
    against 25-33 s), for a reason not yet found; fake trials did not show it."""
    folder = store.StudyFolder.open(ctx["storage"])
    if announce is None:
        return folder
    grace = float(ctx.get("outage_grace", OUTAGE_GRACE))  # a context saved before it existed
    return folder.waiting_out(grace, announce)


def node_name() -> str:
    """``hostname/ip`` of the node running this trial."""
    try:
        ip = ray.util.get_node_ip_address()
    except Exception:  # outside Ray (tests calling the trainable directly)
        ip = "local"
    return f"{socket.gethostname()}/{ip}"


# ----------------------------------------------------------------------------------------------
# The trainable


def train_trial(config: dict[str, Any]) -> None:
    """Run one trial of a study (Ray Tune function trainable; see the module docstring)."""
    ctx, key, flat = _unpack(config)
    _set_threads(ctx["threads"])

    cfg = TrialConfig.from_flat(flat)
    folder = study_folder(ctx)
    fs, root = folder.fs, folder.root
    trial_dir = store.join(root, store.TRIALS_DIR, key)
    remote = store.is_uri(ctx["storage"])
    out_dir = _scratch_dir(key) if remote else Path(trial_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    previous = store.read_record(fs, trial_dir)
    if previous is not None and previous.get("state") in (COMPLETED, PRUNED):
        # Finished before its driver was lost, unbeknown to Tune: keep the record, report it.
        rows = _stored_rows(fs, trial_dir)
        reporter = _Reporter(key, {"epochs": rows}, cfg, ctx["metric"])
        tune.report(reporter.final(previous["state"], previous))
        return
    # An errored trial that Tune restarts (not resumes: no checkpoint) starts from scratch.
    restart = previous is not None and previous.get("state") == ERROR
    meta, resumed = _restore(tune.get_checkpoint(), out_dir, allow_local=not restart)
    resume = resumed or not restart
    reporter = _Reporter(key, meta, cfg, ctx["metric"], out_dir / "checkpoint")
    record = dict(study=ctx["name"], trial_key=key, config=cfg.to_flat(),
                  started_at=meta["started_at"], attempts=meta["attempts"], node=node_name(),
                  versions=versions(), git_rev=ctx["git_rev"],
                  trial_dir=store.join(ctx["storage"], store.TRIALS_DIR, key))

    # The running marker (study.store.running): `gmmpvae status` reads it, not Tune's state;
    # each epoch refreshes it and the record written as the trial ends removes it.
    marker = store.running.start(fs, trial_dir, trial_key=key, node=record["node"],
                                 attempt=meta["attempts"], first_started_at=meta["started_at"])
    trial_function = resolve_function(ctx["trial_function"])
    try:
        metrics = trial_function(cfg, out_dir, callback=marker.beating(reporter), resume=resume)
    except (NonFiniteLossError, DataError) as exc:
        # Deterministic (a NaN loss; the dataset missing on this node): record it and end the
        # trial normally, so Tune does not retry it.
        _finish(fs, trial_dir, out_dir, remote, reporter.rows,
                store.make_record(state=ERROR, error=str(exc), epochs=reporter.rows,
                                    **record))
        tune.report(reporter.final(ERROR, {}, error=str(exc)))
        return
    except Exception as exc:
        _finish(fs, trial_dir, out_dir, remote, reporter.rows,
                store.make_record(state=ERROR, error=f"{type(exc).__name__}: {exc}",
                                    epochs=reporter.rows, **record))
        raise
    rows = _epoch_rows(out_dir) or reporter.rows
    _finish(fs, trial_dir, out_dir, remote, None,
            store.make_record(state=COMPLETED, metrics=metrics, epochs=rows, **record))
    reporter.rows = rows
    tune.report(reporter.final(COMPLETED, metrics))


class _Reporter:
    """The per-epoch callback of the trainer: epoch metrics and a checkpoint to Tune; the run's
    meta (first start, attempts, epoch rows) goes with the checkpoint and, for a later attempt
    that Tune cannot give a checkpoint to, next to the trainer's own in ``local_dir``."""

    def __init__(self, key: str, meta: dict[str, Any], cfg: Any, metric: str,
                 local_dir: Path | None = None) -> None:
        self.key, self.meta, self.metric, self.local_dir = key, meta, metric, local_dir
        self.rows: list[dict[str, Any]] = list(meta["epochs"])
        self.max_epochs, self.patience = cfg.train.max_epochs, cfg.train.patience

    def __call__(self, metrics: dict[str, Any], save_checkpoint: Callable[[Path], None]) -> None:
        row = {name: metrics.get(name) for name in store.EPOCH_COLUMNS}  # v1 rows: nulls
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        report = {**metrics, KEY_FIELD: self.key}
        epoch = int(metrics["epoch"])
        last = epoch >= self.max_epochs or epoch - int(metrics["best_epoch"]) >= self.patience
        if not last:
            report[TIME_ATTR] = epoch
        report.setdefault(self.metric, None)  # a metric known only at the end (test_ll, …)
        meta = json.dumps({**self.meta, "epochs": self.rows})
        if self.local_dir is not None and self.local_dir.is_dir():
            atomic_write_text(self.local_dir / META_FILE, meta)
        with tempfile.TemporaryDirectory(prefix="gmmpvae-ckpt-") as tmp:
            save_checkpoint(Path(tmp))
            Path(tmp, META_FILE).write_text(meta, encoding="utf-8")
            # tune.report persists the checkpoint before it returns: the folder may go.
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))

    def final(self, state: str, metrics: dict[str, Any], error: str | None = None
              ) -> dict[str, Any]:
        """The trial's last result: its state, last epoch and test metrics (NaN when failed)."""
        last = self.rows[-1] if self.rows else {}
        out: dict[str, Any] = {k: v for k, v in last.items() if k != "epoch"}
        out.update({k: v for k, v in metrics.items()
                    if isinstance(v, int | float | str | bool) or v is None})
        out.update({STATE_KEY: state, KEY_FIELD: self.key,
                    "epochs_run": int(last.get("epoch", 0))})
        if error is not None:
            out["error"] = error
            out[self.metric] = math.nan
            out.setdefault("val_loss", math.nan)
        out.setdefault(self.metric, None)
        return out


# ----------------------------------------------------------------------------------------------
# Helpers


def _unpack(config: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A trial's Tune config → (the study's shared context, its trial_key, its flat config)."""
    flat = {k: v for k, v in config.items() if k not in (CONTEXT_KEY, KEY_FIELD)}
    return config[CONTEXT_KEY], config[KEY_FIELD], flat


def _set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))


def _scratch_dir(key: str) -> Path:
    return store.scratch("gmmpvae-trials", key)


def _restore(checkpoint: Any, out_dir: Path, allow_local: bool) -> tuple[dict[str, Any], bool]:
    """(meta, resumed): the run's meta (first start, attempts, epoch rows) and whether the
    trainer resumes. Tune's checkpoint (a retry, a restored experiment) is put where the trainer
    resumes from (``<out_dir>/checkpoint/``); without one, and when ``allow_local``, the
    trial folder's own checkpoint is used (a trial its lost driver had started)."""
    target = out_dir / "checkpoint"
    if checkpoint is not None:
        try:
            with checkpoint.as_directory() as folder:
                source = Path(folder)
                if not intact(source):
                    raise ValueError(f"torn checkpoint in {source}")
                meta = json.loads((source / META_FILE).read_text(encoding="utf-8"))
                target.mkdir(parents=True, exist_ok=True)
                for name in (CHECKPOINT_FILE, META_FILE):
                    atomic_write(target / name,
                                 lambda tmp, name=name: shutil.copyfile(source / name, tmp))
        except (OSError, ValueError):
            pass  # unreadable (e.g. deleted): fall back to the trial folder's own checkpoint
        else:
            meta["attempts"] = int(meta.get("attempts", 1)) + 1
            return meta, True
    local = target / META_FILE
    if allow_local and intact(target):
        meta = json.loads(local.read_text(encoding="utf-8"))
        meta["attempts"] = int(meta.get("attempts", 1)) + 1
        return meta, True
    if target.is_dir() and not intact(target):  # torn by a crash: start from scratch
        shutil.rmtree(target, ignore_errors=True)
    return {"started_at": store.now_utc().isoformat(), "attempts": 1, "epochs": []}, False


def intact(folder: Path) -> bool:
    """Whether a checkpoint folder holds a non-empty checkpoint and a readable meta (a zero-byte
    or truncated file left by a crash is not resumed from)."""
    try:
        if (folder / CHECKPOINT_FILE).stat().st_size == 0:
            return False
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("epochs"), list)


def _stored_rows(fs: Any, trial_dir: str) -> list[dict[str, Any]]:
    """A finished trial's epochs.parquet (in the study's storage) as rows."""
    path = store.join(trial_dir, store.EPOCHS_FILE)
    if not store.exists(fs, path):
        return []
    return pq.read_table(path, filesystem=fs).to_pylist()


def _epoch_rows(out_dir: Path) -> list[dict[str, Any]]:
    """The trainer's epochs.parquet as rows (the whole history, resumed runs included)."""
    path = out_dir / store.EPOCHS_FILE
    if not path.is_file():
        return []
    return pq.read_table(path).to_pylist()


def _finish(fs: Any, trial_dir: str, out_dir: Path, remote: bool,
            rows: list[dict[str, Any]] | None, record: dict[str, Any]) -> None:
    """Write a failed trial's epochs, publish the folder (URI storage), write the record."""
    if rows:
        store.write_epochs(store.filesystem(str(out_dir))[0], str(out_dir), rows)
    if remote:
        store.copy_folder(str(out_dir), fs, trial_dir)
    store.write_record(fs, trial_dir, record)
    if remote and record["state"] == COMPLETED:
        shutil.rmtree(out_dir, ignore_errors=True)


def driver_record(config: dict[str, Any], checkpoint: Any, state: str,
                  error: str | None = None, announce: Callable[[str], None] | None = None
                  ) -> dict[str, Any]:
    """The record the driver writes for a trial that could not write its own: stopped by the
    scheduler (PRUNED) or lost with its node after its last retry (ERROR). Its epochs are the
    ones of its latest checkpoint, also written as the trial folder's epochs.parquet."""
    ctx, key, flat = _unpack(config)
    meta: dict[str, Any] = {"started_at": None, "attempts": 1, "epochs": []}
    if checkpoint is not None:
        try:
            with checkpoint.as_directory() as folder:
                path = Path(folder, META_FILE)
                if path.is_file():
                    meta = json.loads(path.read_text(encoding="utf-8"))
        except Exception:  # a checkpoint that cannot be read: the record says what is known
            pass
    folder = study_folder(ctx, announce)
    fs, root = folder.fs, folder.root
    trial_dir = store.join(root, store.TRIALS_DIR, key)
    if meta["epochs"]:
        store.write_epochs(fs, trial_dir, meta["epochs"])
    record = store.make_record(
        study=ctx["name"], trial_key=key, state=state, error=error, config=flat,
        epochs=meta["epochs"], started_at=meta["started_at"], attempts=meta["attempts"],
        git_rev=ctx["git_rev"], trial_dir=store.join(ctx["storage"], store.TRIALS_DIR, key))
    store.write_record(fs, trial_dir, record)
    return record
