"""Training one GMMpVAE: Adam, KL warm-up, early stopping on the validation loss, checkpoints.

`train` is a pure function of a `TrialConfig` and a `Dataset`: it builds the model, runs at most
``max_epochs`` epochs and returns the model with its best weights. Once per epoch it calls
``callback(metrics, save_checkpoint)``; the callback may call ``save_checkpoint(folder)`` to
write a resumable checkpoint there (that is how a Ray Tune trial reports). ``resume_from`` is a
folder holding such a checkpoint: the run continues exactly where it stopped (bit-identical on
CPU), because a checkpoint holds the model, the optimiser, the epoch, the early-stopping state
with the best weights, the history, and the state of every random source (torch CPU and CUDA,
numpy, Python ``random``, and the data generator that shuffles and binarises the batches).

Continuing to a larger budget: the checkpoint of a run with ``max_epochs = n`` (finished or
not) continues under a config that differs only by a larger ``max_epochs = N``
(`continuation_differences`; anything else is refused in one line). Nothing of an epoch
depends on ``max_epochs`` — β_t and the learning rate depend on the epoch only, early stopping
carries its counters and best weights in the checkpoint, the validation and evaluation noise
are seeded from the trial's seed — so epochs n+1 … N, the best weights and the test metrics
are bit-identical on CPU (fp32) to a run of the N-epoch config from scratch
(tests/models/test_continuation.py; docs/BUDGETS.md). A run that stopped early stays stopped:
it trains no more.

Protocol (docs/MATH.md#objective, paper §IV):
- the training loss of a batch is mean(RE + β_t·KL), β_t = min(1, epoch / warmup_epochs)
  (`TrainConfig.beta`, epochs counted from 1), KL the configured estimator (eq. 23);
- the validation loss is the mean over the validation images of RE + KL with β = 1, i.e. the
  negative of the training objective's bound (−L(x), eq. 23) — for ``kl_estimator = "mc"``
  the negative MC ELBO. It is computed with a fixed random seed every epoch (common random
  numbers), so the noise of the stratified RE sample does not move the early-stopping decision
  from one epoch to the next; that seed is forked, so the training random stream is untouched;
- with it, at the same samples, the validation MC ELBO ``val_elbo_mc`` = −mean(RE + KL_MC)
  (KL_MC: log q(z|x) − log p(z) at the stratified samples, exact mixture densities): an
  estimate of the ELBO that does not depend on the training objective's KL estimator, so it
  ranks models trained with different estimators, M and K on one scale (open searches rank
  and stop trials by it: study preset open_search). Its cost per epoch is measured by
  benchmarks/bench_val_elbo.py; for ``kl_estimator = "mc"`` it is the negative val_loss;
- after it, on the same fixed noise, the collapse diagnostics of models.diagnostics on the
  validation set (spread ratio, members used, responsibility perplexity, U − KL_MC gaps) go
  into the epoch's row;
- early stopping (`EarlyStopping`): stop after ``patience`` consecutive epochs without a strictly
  lower validation loss; the weights of the best epoch are kept and returned.

Speed (the same on CPU and GPU): the whole dataset lives on the training device and batches are
drawn and binarised there (`models.data.Dataset.train_batches`); the per-batch loss, RE and KL
sums stay on the device and are read once per epoch — no host synchronisation inside an epoch.
A non-finite loss is therefore found at the end of its epoch, and named by epoch and batch
from the per-batch losses kept on the device; the trial fails before that epoch's checkpoint
is written, so no NaN weights are ever saved. ``TrainConfig.precision`` sets the networks'
precision (`models.precision`: densities, loss and Adam's state stay float32),
``TrainConfig.compile`` compiles the step (`models.step`, eager fallback).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoint import (
    CHECKPOINT_FILE,
    atomic_write_bytes,
    capture_rng,
    load_torch,
    restore_rng,
    seed_everything,
    torch_bytes,
)
from models.config import TrialConfig
from models.diagnostics import DIAGNOSTICS, collapse_diagnostics
from models.precision import check_precision, configure_device, set_precision
from models.step import TrainStep

CHECKPOINT_FORMAT = 1
VAL_BATCH = 500  # validation images per forward pass
VAL_SEED_OFFSET = 7_919  # validation noise seed = trial seed + this (a forked RNG)
# Fields that may differ between a checkpoint and the run resuming it: where it runs, where the
# data files are, the evaluation's memory budget and compiling do not change the trial.
RESUME_EXEMPT = frozenset({"device", "data_dir", "eval_memory_mb", "compile"})
# The one field that may also grow: a run continues its checkpoint to a larger ``max_epochs``
# exactly (β and the learning rate depend on the epoch only; docs/BUDGETS.md).
BUDGET_FIELD = "max_epochs"

Metrics = dict[str, Any]
SaveCheckpoint = Callable[[Path], None]
Callback = Callable[[Metrics, SaveCheckpoint], None]
EPOCH_KEYS = (
    "epoch", "beta", "train_loss", "train_re", "train_kl", "val_loss", "val_re", "val_kl",
    "val_elbo_mc", "seconds", *DIAGNOSTICS,
)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite. ``epoch`` and ``batch`` count from 1; ``batch`` is None
    for the validation loss. The caller decides what to record (a Ray trial: state ERROR)."""

    def __init__(self, epoch: int, batch: int | None, value: float) -> None:
        where = f"batch {batch}" if batch is not None else "validation"
        super().__init__(f"non-finite loss ({value}) at epoch {epoch}, {where}")
        self.epoch, self.batch, self.value = epoch, batch, value


class CheckpointMismatchError(ValueError):
    """A checkpoint belongs to another configuration than the run asked to resume from it."""


def config_differences(saved: dict[str, Any], current: dict[str, Any],
                       exempt: frozenset[str] = RESUME_EXEMPT) -> list[str]:
    """``field: saved -> current`` for every flat-config field that differs, but the
    ``exempt`` ones (device, data_dir, eval_memory_mb, compile: they do not change the trial)."""
    keys = sorted((set(saved) | set(current)) - exempt)
    return [
        f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
        for k in keys
        if _normalise(saved.get(k)) != _normalise(current.get(k))
    ]


def continuation_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What keeps the run ``current`` from continuing a checkpoint (or a trial folder) of
    ``saved``: every differing field as `config_differences` names it, except a ``max_epochs``
    that grows (or stays); a smaller one is named with "(it may only grow)"."""
    diffs = config_differences(saved, current, RESUME_EXEMPT | {BUDGET_FIELD})
    before, after = saved.get(BUDGET_FIELD), current.get(BUDGET_FIELD)
    if before is not None and after is not None and int(after) < int(before):
        diffs.append(f"{BUDGET_FIELD}: {before!r} -> {after!r} (it may only grow)")
    return diffs


def mismatch_line(where: str, diffs: list[str]) -> str:
    """The one line that refuses a checkpoint or trial folder of another configuration."""
    return (f"{where} is of another configuration ({'; '.join(diffs)}): only a larger "
            f"{BUDGET_FIELD} may differ (and device, data_dir, eval_memory_mb, compile)")


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def resolve_device(name: str) -> torch.device:
    """``TrainConfig.device`` → a torch device; "auto" is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class EarlyStopping:
    """Look-ahead early stopping: stop once ``patience`` consecutive epochs brought no strictly
    lower loss than the best so far. Drive it with `step`; `should_stop` says when to stop."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def step(self, epoch: int, loss: float) -> bool:
        """Record ``loss`` of ``epoch``; True when it is a new best (keep those weights)."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "patience": self.patience, "best_loss": self.best_loss,
            "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.patience = int(state["patience"])
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])


@dataclass
class TrainResult:
    """The trained model (holding its best weights) and what happened."""

    model: nn.Module
    history: list[dict[str, Any]]  # one row per epoch, keys EPOCH_KEYS
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    best_val_loss: float
    compiled: bool = False  # the training step ran through torch.compile (models.step)


def build_model(cfg: TrialConfig, data: Any) -> nn.Module:
    """The GMMpVAE of ``cfg.model``; pseudo-inputs start from training images when
    ``pseudo_init = "data"``. Built on the CPU (same initial weights on every device)."""
    from models.vae import GMMpVAE

    init = data.train[: cfg.model.K].cpu() if cfg.model.pseudo_init == "data" else None
    return GMMpVAE(cfg.model, init_data=init)


def check_data(cfg: TrialConfig, data: Any) -> None:
    """The dataset must be the one the config describes (its image shape and likelihood)."""
    model = cfg.model
    if tuple(data.image_shape) != tuple(model.image_shape) or data.likelihood != model.likelihood:
        raise ValueError(
            f"dataset {data.name!r} has image_shape={tuple(data.image_shape)} and "
            f"likelihood={data.likelihood!r}, but the model config says "
            f"image_shape={tuple(model.image_shape)} and likelihood={model.likelihood!r}"
        )


@contextmanager
def fixed_noise(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG seeded to ``seed``, restoring the outer stream."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def train(
    cfg: TrialConfig,
    data: Any,
    *,
    callback: Callback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: bool = False,
    checkpoint_every: int = 1,
) -> TrainResult:
    """Train ``cfg`` on ``data`` (a `models.data.Dataset`) with Adam and early stopping.

    ``checkpoint_dir``: write a resumable checkpoint there every ``checkpoint_every`` epochs and
    at the last epoch. ``callback(metrics, save_checkpoint)``: once per epoch (see module doc).
    ``resume_from``: a folder with ``checkpoint.pt`` from a run of the same config, or of the
    same config with a smaller ``max_epochs`` (continued to this one, bit-identical on CPU to a
    run of this config from scratch; `continuation_differences`).
    Raises `NonFiniteLossError` on a NaN/inf loss, `CheckpointMismatchError` on a foreign
    checkpoint.
    """
    tc = cfg.train
    check_data(cfg, data)
    device = resolve_device(tc.device)
    check_precision(tc.precision, device)
    configure_device(device)
    data = data.to(device) if data.device != device else data
    seed_everything(tc.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(tc.seed)
    model = set_precision(build_model(cfg, data).to(device), tc.precision)
    step = TrainStep(model, compile=tc.compile)
    # The fused kernel (CPU and CUDA) does one pass over all parameters: ≈10% of a CPU step.
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, fused=True)
    stopper = EarlyStopping(tc.patience)
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    epoch = 0
    flat = cfg.to_flat()

    if resume_from is not None:
        ckpt = load_torch(Path(resume_from) / CHECKPOINT_FILE)
        diffs = continuation_differences(ckpt["config"], flat)
        if diffs:
            raise CheckpointMismatchError(mismatch_line(f"checkpoint in {resume_from}", diffs))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        stopper.load_state_dict(ckpt["early_stopping"])
        best_state = ckpt["best_model"]
        history = list(ckpt["history"])
        epoch = int(ckpt["epoch"])
        restore_rng(ckpt["rng"], generator, device)

    def snapshot(rng: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        return lambda: {
            "format": CHECKPOINT_FORMAT, "config": flat, "epoch": epoch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "early_stopping": stopper.state_dict(), "best_model": best_state,
            "history": history, "rng": rng,
        }

    bar = _progress_bar(progress, tc.max_epochs, epoch)
    stopped_early = stopper.should_stop
    try:
        while not stopped_early and epoch < tc.max_epochs:
            epoch += 1
            start = time.perf_counter()
            beta = tc.beta(epoch)
            train_stats = _train_epoch(step, optimizer, data, tc.batch_size, generator, beta,
                                       epoch, device)
            with fixed_noise(tc.seed + VAL_SEED_OFFSET, device):
                val_stats = validation_loss(model, data.val, epoch)
                val_stats.update(collapse_diagnostics(model, data.val))
            if stopper.step(epoch, val_stats["val_loss"]):
                best_state = {k: v.detach().to("cpu", copy=True)
                              for k, v in model.state_dict().items()}
            row = {"epoch": epoch, "beta": beta, **train_stats, **val_stats,
                   "seconds": time.perf_counter() - start}
            history.append(row)
            stopped_early = stopper.should_stop
            # The random state at the end of the epoch is what a resumed run starts from; the
            # callback runs on a forked torch RNG so it cannot shift the training stream.
            saver = _MemoSaver(snapshot(capture_rng(generator, device)))
            last = stopped_early or epoch == tc.max_epochs
            if checkpoint_dir is not None and (last or epoch % checkpoint_every == 0):
                saver(Path(checkpoint_dir))
            if callback is not None:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    callback({**row, "best_epoch": stopper.best_epoch,
                              "best_val_loss": stopper.best_loss}, saver)
            if bar is not None:
                bar.set_postfix(loss=f"{row['train_loss']:.2f}", val=f"{row['val_loss']:.2f}",
                                best=f"{stopper.best_loss:.2f}@{stopper.best_epoch}",
                                refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, history, stopper.best_epoch, epoch, stopped_early,
                       stopper.best_loss, compiled=step.is_compiled)


def _train_epoch(step: TrainStep, optimizer: torch.optim.Optimizer, data: Any,
                 batch_size: int, generator: torch.Generator, beta: float, epoch: int,
                 device: torch.device) -> dict[str, float]:
    """One pass over the shuffled, freshly binarised training set; means per image.

    `epoch_batches` keeps each batch's loss and sums of RE and KL on the device; they are read
    once, here (the epoch's only host synchronisation), which is also when a non-finite loss
    is looked for and located (`NonFiniteLossError`)."""
    stats, sizes = epoch_batches(step, optimizer, data, batch_size, generator, beta, device)
    stats = stats.cpu()  # the one synchronisation of the epoch
    bad = (~torch.isfinite(stats[:, 0])).nonzero()
    if bad.numel():
        first = int(bad[0, 0])
        raise NonFiniteLossError(epoch, first + 1, float(stats[first, 0]))
    n = sum(sizes)
    weights = torch.tensor(sizes, dtype=torch.float64)
    return {"train_loss": float((stats[:, 0] * weights).sum()) / n,
            "train_re": float(stats[:, 1].sum()) / n, "train_kl": float(stats[:, 2].sum()) / n}


def epoch_batches(step: TrainStep, optimizer: torch.optim.Optimizer, data: Any,
                  batch_size: int, generator: torch.Generator, beta: float,
                  device: torch.device) -> tuple[torch.Tensor, list[int]]:
    """The batches of one epoch, without reading anything back from the device: a
    (batches, 3) float64 tensor on the device (loss, Σ RE, Σ KL per batch) and the batch
    sizes. A NaN step reaches the weights here; `_train_epoch` fails the epoch on it."""
    step.model.train()
    n_batches = math.ceil(data.train.shape[0] / batch_size)
    stats = torch.zeros(n_batches, 3, dtype=torch.float64, device=device)
    sizes = []
    for index, x in enumerate(data.train_batches(batch_size, generator)):
        loss, re, kl = step(x, beta)
        optimizer.step()
        stats[index, 0] = loss
        stats[index, 1] = re.sum()
        stats[index, 2] = kl.sum()
        sizes.append(x.shape[0])
    return stats, sizes


@torch.no_grad()
def validation_loss(model: nn.Module, x_val: torch.Tensor, epoch: int = 0,
                    mc_elbo: bool = True) -> dict[str, float | None]:
    """Mean over ``x_val`` of RE, KL (the configured estimator), RE + KL (β = 1) and the MC
    ELBO −(RE + KL_MC) at the same samples (``mc_elbo=False``: not computed, None)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=x_val.device)  # Σre, Σkl, Σkl_mc
    for start in range(0, x_val.shape[0], VAL_BATCH):
        terms = model(x_val[start : start + VAL_BATCH], 1.0)
        totals[0] += terms.re.double().sum()
        totals[1] += terms.kl.double().sum()
        if mc_elbo:
            totals[2] += terms.estimate("mc").double().sum()
    model.train(was_training)
    total_re, total_kl, total_mc = totals.tolist()  # one synchronisation
    n = x_val.shape[0]
    val_loss = (total_re + total_kl) / n
    if not math.isfinite(val_loss):
        raise NonFiniteLossError(epoch, None, val_loss)
    return {"val_loss": val_loss, "val_re": total_re / n, "val_kl": total_kl / n,
            "val_elbo_mc": -(total_re + total_mc) / n if mc_elbo else None}


class _MemoSaver:
    """save_checkpoint(folder) for one epoch: the state is serialised once, on first use, and
    the same bytes are written to every folder asked for (the trial's and Ray Tune's)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot
        self._bytes: bytes | None = None

    def __call__(self, folder: Path) -> None:
        if self._bytes is None:
            self._bytes = torch_bytes(self._snapshot())
        atomic_write_bytes(Path(folder) / CHECKPOINT_FILE, self._bytes)


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm  # lazy: only `gmmpvae train` shows a bar

    return tqdm(total=total, initial=initial, unit="epoch", desc="train", dynamic_ncols=True)
