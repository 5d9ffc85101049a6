"""One whole trial: load the data, train, evaluate, write the trial folder.

`run_trial` is what `gmmpvae train` runs and what each Ray Tune trial runs. The folder it
writes (every file atomically: a temporary file, then ``os.replace``):

- ``config.json``: ``TrialConfig.to_flat()`` plus ``resolved_device`` (the device "auto" became);
- ``checkpoint/checkpoint.pt``: the latest resumable training checkpoint (every epoch);
- ``best.pt``: the best weights (``{"config", "model", "best_epoch", "best_val_loss"}``);
- ``epochs.parquet``: one row per epoch (`models.records`);
- ``test_ll.parquet``: one row per test image (`models.records`);
- ``reconstructions.png`` (rows of test images, then the same rows reconstructed) and
  ``samples.png`` (mean images of p(x|z), z ∼ p(z); drawn images for PixelCNN);
- ``metrics.json``: written last, so its presence means the trial is complete (`METRIC_KEYS`;
  ``device`` is where it ran — ``cpu`` or ``cuda:<index> <GPU name>`` —, ``gpu_memory_peak_mb``
  the most GPU memory this process's tensors held during training and evaluation
  (``torch.cuda.max_memory_allocated``; null on CPU; for a resumed trial, the last attempt's),
  ``compiled`` whether the training step ran compiled).

Re-running into the same folder resumes from ``checkpoint/`` and returns ``metrics.json``
without retraining when it exists; a folder of another configuration is refused.

A larger budget: re-running into a folder with a config that differs only by a larger
``max_epochs`` continues the trial from ``checkpoint/`` to it (`models.training`: bit-identical
on CPU to a run of that budget from scratch; a trial that stopped early trains no further and
is evaluated again, to the same numbers). A finished result of the smaller budget ``n`` is kept
first: its result files (`BUDGET_FILES`) are copied to ``budgets/<n>/`` — into a temporary
folder renamed into place, so the copy is whole or absent — before ``metrics.json`` is removed
and training goes on; the top of the folder is always the largest budget. A budget never
shrinks: a smaller ``max_epochs`` is refused like any other difference.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import CHECKPOINT_FILE, atomic_torch_save, atomic_write, atomic_write_json
from models.config import TrialConfig
from models.diagnostics import DIAGNOSTICS, is_collapsed
from models.evaluation import Evaluation, evaluate
from models.precision import check_precision
from models.records import (
    EPOCH_COLUMNS,
    EPOCHS_FILE,
    EPOCHS_TRIAL_SCHEMA,
    METRICS_FILE,
    TEST_LL_FILE,
    TEST_LL_TRIAL_SCHEMA,
)
from models.training import (
    BUDGET_FIELD,
    Callback,
    TrainResult,
    check_data,
    continuation_differences,
    fixed_noise,
    resolve_device,
    train,
)

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoint"
BEST_FILE = "best.pt"
RECONSTRUCTIONS_FILE = "reconstructions.png"
SAMPLES_FILE = "samples.png"
BUDGETS_DIR = "budgets"  # budgets/<max_epochs>/: a smaller budget's results, kept
# A finished trial's results, kept in budgets/<n>/ when the trial continues past n epochs.
BUDGET_FILES = (CONFIG_FILE, METRICS_FILE, EPOCHS_FILE, TEST_LL_FILE, BEST_FILE,
                RECONSTRUCTIONS_FILE, SAMPLES_FILE)
N_RECONSTRUCTIONS = 32  # test images shown (4 rows of 8)
N_SAMPLES = 64  # prior samples shown (8 × 8)
GRID_COLUMNS = 8
METRIC_KEYS = (
    "epochs_run", "best_epoch", "best_val_loss", "stopped_early", "test_re", "test_kl",
    "test_kl_mc", "test_kl_lse", "test_elbo_bound", "test_elbo_mc", "test_ll", "is_samples",
    "train_seconds", "eval_seconds", "device", "n_test", "gpu_memory_peak_mb", "compiled",
    *DIAGNOSTICS, "collapsed",
)


class TrialFolderError(ValueError):
    """The output folder holds another trial (its config.json differs)."""


def write_parquet(path: Path, columns: dict[str, list], schema: Any) -> Path:
    """Write ``columns`` with the explicit ``schema``, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: columns[name] for name in schema.names}, schema=schema)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def check_folder(out: Path, cfg: TrialConfig) -> int | None:
    """Refuse a folder whose config.json describes another trial (device, data_dir exempt; a
    smaller ``max_epochs`` may grow to ``cfg``'s). Return the folder's ``max_epochs`` (None for
    a new folder)."""
    path = out / CONFIG_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved.pop("resolved_device", None)
    diffs = continuation_differences(saved, cfg.to_flat())
    if diffs:
        raise TrialFolderError(
            f"{out} holds another trial ({'; '.join(diffs)}): choose another folder or delete "
            f"it (only a larger {BUDGET_FIELD} continues it)"
        )
    return int(saved[BUDGET_FIELD])


def keep_budget(out: Path, max_epochs: int) -> Path:
    """Copy the finished result of the ``max_epochs`` budget to ``out/budgets/<max_epochs>/``
    (whole or not at all: a temporary folder renamed into place; an existing copy is kept)."""
    target = out / BUDGETS_DIR / str(max_epochs)
    if target.is_dir():
        return target  # copied before a crash: the rename made it whole
    tmp = target.parent / f".{max_epochs}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir(parents=True)
    try:
        for name in BUDGET_FILES:
            if (out / name).is_file():
                shutil.copy2(out / name, tmp / name)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def run_trial(
    cfg: TrialConfig,
    out_dir: str | Path,
    callback: Callback | None = None,
    resume: bool = True,
    progress: bool = False,
    data: Any = None,
    resume_from: str | Path | None = None,
) -> dict[str, Any]:
    """Train and evaluate ``cfg``, writing the trial folder ``out_dir`` (module doc); return
    the metrics of metrics.json. ``resume=False`` ignores an earlier checkpoint and result in
    the folder (the config must still match). A folder finished at a smaller ``max_epochs``
    continues to ``cfg``'s, its earlier result kept in ``budgets/<n>/`` (module doc).
    ``data``: an already loaded `Dataset`.
    ``resume_from``: a checkpoint folder to continue from instead of ``out_dir/checkpoint``
    (e.g. the one Ray Tune restores on another node after a failure)."""
    out = Path(out_dir)
    device = resolve_device(cfg.train.device)
    check_precision(cfg.train.precision, device)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    saved_budget = check_folder(out, cfg)
    metrics_path = out / METRICS_FILE
    if metrics_path.is_file() and saved_budget is not None \
            and saved_budget < cfg.train.max_epochs:
        keep_budget(out, saved_budget)  # then the folder continues to the larger budget
        metrics_path.unlink()
    if resume and metrics_path.is_file():
        return json.loads(metrics_path.read_text(encoding="utf-8"))
    if not resume:
        metrics_path.unlink(missing_ok=True)
        (out / CHECKPOINT_DIR / CHECKPOINT_FILE).unlink(missing_ok=True)

    tc = cfg.train
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if data is None:
        from models.data import load_dataset

        data = load_dataset(tc.dataset, tc.data_dir, device, tc.max_train_examples,
                            tc.max_test_examples)
    check_data(cfg, data)
    atomic_write_json(out / CONFIG_FILE, {**cfg.to_flat(), "resolved_device": str(device)})

    ckpt_dir = out / CHECKPOINT_DIR
    if resume_from is None and resume and (ckpt_dir / CHECKPOINT_FILE).is_file():
        resume_from = ckpt_dir
    result = train(cfg, data, callback=callback, checkpoint_dir=ckpt_dir,
                   resume_from=resume_from, progress=progress)
    flat = cfg.to_flat()
    atomic_torch_save(out / BEST_FILE, {
        "config": flat, "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
        "model": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
    })
    write_parquet(out / EPOCHS_FILE,
                  {k: [row.get(k) for row in result.history] for k in EPOCH_COLUMNS},
                  EPOCHS_TRIAL_SCHEMA)

    evaluation = evaluate(result.model, data, tc.is_samples, tc.eval_memory_mb, tc.seed,
                          progress=progress)
    write_parquet(out / TEST_LL_FILE, evaluation.rows(), TEST_LL_TRIAL_SCHEMA)
    write_images(result.model, data, out, tc.seed)
    metrics = trial_metrics(result, evaluation, device, cfg.train.warmup_epochs)
    atomic_write_json(metrics_path, metrics)
    return metrics


def device_label(device: torch.device) -> str:
    """``cpu``, or ``cuda:<index> <name>`` (the index as this process sees it: under Ray, of
    the GPUs it was given)."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


def gpu_memory_peak_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated by this process's tensors since the trial started (MiB);
    None off CUDA."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def trial_metrics(result: TrainResult, evaluation: Evaluation, device: torch.device,
                  warmup_epochs: int = 0) -> dict[str, Any]:
    metrics = {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "stopped_early": result.stopped_early,
        **evaluation.summary,
        "is_samples": evaluation.is_samples,
        "train_seconds": float(sum(row["seconds"] for row in result.history)),
        "eval_seconds": evaluation.seconds,
        "device": device_label(device),
        "n_test": int(evaluation.log_likelihood.shape[0]),
        "gpu_memory_peak_mb": gpu_memory_peak_mb(device),
        "compiled": result.compiled,
    }
    # The collapse diagnostics of the returned (best) weights: that epoch's row.
    best = [row for row in result.history if row["epoch"] == result.best_epoch]
    diagnostics = {name: best[-1].get(name) if best else None for name in DIAGNOSTICS}
    metrics.update(diagnostics, collapsed=is_collapsed(
        diagnostics["spread_ratio"], diagnostics["resp_perplexity"], result.best_epoch,
        warmup_epochs))
    return {k: metrics[k] for k in METRIC_KEYS}


@torch.no_grad()
def write_images(model: torch.nn.Module, data: Any, out: Path, seed: int) -> None:
    """reconstructions.png and samples.png (fixed test images, fixed sampling seed)."""
    from models.images import make_grid, reconstruction_grid, save_png

    device = next(model.parameters()).device
    shape = tuple(data.image_shape)
    scale = max(1, 64 // max(shape))  # 8×8 digits drawn 8× larger, 28×28 images 2×
    x = data.test[:N_RECONSTRUCTIONS].to(device)
    with fixed_noise(seed, device):
        recons = model.reconstruct(x)
        samples = model.sample(N_SAMPLES, mean=not model.autoregressive)
    save_png(reconstruction_grid(x, recons, shape, GRID_COLUMNS), out / RECONSTRUCTIONS_FILE,
             scale)
    save_png(make_grid(samples, shape, GRID_COLUMNS), out / SAMPLES_FILE, scale)
