"""Fast stand-ins for `models.trial.run_trial` in orchestration tests (same signature, same
files, no torch training), importable by Ray workers: tests put this folder on PYTHONPATH.

Behaviour is set by these settings, read from ``fake.json`` in the study folder (the trial
folder's grandparent) when it exists, else from environment variables of the same names
(which reach Ray's workers only if set before Ray starts):

- ``FAKE_EPOCH_SECONDS``: sleep per epoch (default 0.05);
- ``FAKE_MARKER_DIR`` and ``FAKE_MARKER_EPOCH``: after that epoch, write
  ``<dir>/<tag>.marker`` holding the Ray node id (so a test can remove that node mid-trial);
- ``FAKE_NAN_MATCH``: trials whose tag (``m<M>-k<K>-<prior>-s<seed>``) contains it get a NaN
  loss at epoch 2 (`NonFiniteLossError`);
- ``FAKE_CRASH_MATCH`` and ``FAKE_CRASH_DIR``: the first attempt of matching trials raises
  RuntimeError at epoch 2 (a file in that folder remembers it); the retry succeeds.

Every epoch actually run is appended to ``executed.log`` in the trial folder (epoch, pid).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.pt"


def _loss(cfg: Any, epoch: int) -> float:
    return 100.0 / (epoch + 1) + 0.1 * cfg.model.M + 0.001 * cfg.model.K + 0.01 * cfg.train.seed


def last_val_loss(row: dict[str, Any]) -> float:
    """The val_loss of the last epoch of a trials.parquet row's trial."""
    return 100.0 / (row["epochs_run"] + 1) + 0.1 * row["M"] + 0.001 * row["K"] + 0.01 * row["seed"]


def settings(out: Path) -> dict[str, str]:
    path = out.resolve().parents[1] / "fake.json"
    if path.is_file():
        return {k: str(v) for k, v in json.loads(path.read_text()).items()}
    return {k: v for k, v in os.environ.items() if k.startswith("FAKE_")}


def fake_trial(cfg: Any, out_dir: Any, callback: Any = None, resume: bool = True,
               progress: bool = False) -> dict[str, Any]:
    """Pretend to train ``cfg.train.max_epochs`` epochs; write run_trial's files."""
    from models.training import NonFiniteLossError

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    if resume and metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    ckpt = out / "checkpoint" / CHECKPOINT
    history: list[dict[str, Any]] = []
    if resume and ckpt.is_file():
        history = json.loads(ckpt.read_text())["history"]
    (out / "config.json").write_text(json.dumps(cfg.model.to_dict() | cfg.train.to_dict()))
    control = settings(out)
    delay = float(control.get("FAKE_EPOCH_SECONDS", "0.05"))
    marker_dir = control.get("FAKE_MARKER_DIR")
    marker_epoch = int(control.get("FAKE_MARKER_EPOCH", "2"))
    crash_dir = control.get("FAKE_CRASH_DIR")
    tag = f"m{cfg.model.M}-k{cfg.model.K}-{cfg.model.prior}-s{cfg.train.seed}"
    nan = control.get("FAKE_NAN_MATCH")
    crash = control.get("FAKE_CRASH_MATCH")
    epoch = len(history)
    best = min(history, key=lambda r: r["val_loss"]) if history else None
    while epoch < cfg.train.max_epochs:
        epoch += 1
        start = time.perf_counter()
        time.sleep(delay)
        with open(out / "executed.log", "a") as log:
            log.write(f"{epoch} {os.getpid()}\n")
        if nan and nan in tag and epoch == 2:
            raise NonFiniteLossError(epoch, 1, math.nan)
        if crash and crash_dir and crash in tag and epoch == 2:
            flag = Path(crash_dir, tag)
            if not flag.exists():
                flag.write_text("crashed once")
                raise RuntimeError("simulated crash")
        loss = _loss(cfg, epoch)
        row = {"epoch": epoch, "beta": 1.0, "train_loss": loss + 1, "train_re": loss,
               "train_kl": 1.0, "val_loss": loss, "val_re": loss - 1, "val_kl": 1.0,
               "seconds": time.perf_counter() - start}
        history.append(row)
        if best is None or loss < best["val_loss"]:
            best = row
        state = json.dumps({"epoch": epoch, "history": history})

        def save(folder: Any, state: str = state) -> None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            Path(folder, CHECKPOINT).write_text(state)

        save(out / "checkpoint")
        if callback is not None:
            callback({**row, "best_epoch": best["epoch"], "best_val_loss": best["val_loss"]},
                     save)
        if marker_dir and epoch == marker_epoch:
            import ray

            node = ray.get_runtime_context().get_node_id()
            Path(marker_dir, f"{tag}.marker").write_text(node)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(history), out / "epochs.parquet")
    n_test = 5
    pq.write_table(pa.table({
        "image": list(range(n_test)), "log_likelihood": [-best["val_loss"]] * n_test,
        "elbo_bound": [-best["val_loss"] - 1] * n_test, "elbo_mc": [-best["val_loss"]] * n_test,
        "re": [best["val_loss"]] * n_test, "kl_bound": [1.0] * n_test, "kl_mc": [0.9] * n_test,
    }), out / "test_ll.parquet")
    metrics = {
        "epochs_run": epoch, "best_epoch": best["epoch"], "best_val_loss": best["val_loss"],
        "stopped_early": False, "test_re": best["val_loss"], "test_kl": 1.0, "test_kl_mc": 0.9,
        "test_elbo_bound": -best["val_loss"] - 1, "test_elbo_mc": -best["val_loss"],
        "test_ll": -best["val_loss"], "is_samples": cfg.train.is_samples,
        "train_seconds": sum(r["seconds"] for r in history), "eval_seconds": 0.0,
        "device": "cpu", "n_test": n_test,
    }
    metrics_path.write_text(json.dumps(metrics))
    return metrics
