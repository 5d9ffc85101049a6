"""Benchmark: the cost per epoch of the validation MC ELBO (``val_elbo_mc``, models.training)
against the epoch's training time. Prints JSON.

For each KL estimator: one training epoch (`models.training.epoch_batches`), the validation
pass without the MC ELBO (``validation_loss(..., mc_elbo=False)``: what an epoch cost before)
and with it, each in CPU seconds of one thread (insensitive to other processes on the
machine); ``extra_ratio`` = (with − without) / training epoch. The model and budget come from
a preset (default reproduce_fashion: mlp, 6,000 training and 500 validation images) with
M and K set here (default M = 3, K = 500, the most expensive configuration: log p(z) over
K·M components per sample). For ``mc`` the MC KL is the training objective's own, so the extra
is ≈ 0.

Usage: python benchmarks/bench_val_elbo.py [--preset reproduce_fashion] [--data-dir DIR]
       [--M 3] [--K 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_reproduce import preset_config  # noqa: E402
from models.data import load_dataset  # noqa: E402
from models.step import TrainStep  # noqa: E402
from models.training import build_model, epoch_batches, fixed_noise, validation_loss  # noqa: E402


def _cpu(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def cost(preset: str, data_dir: str | None, estimator: str, m: int, k: int,
         repeats: int) -> dict:
    cfg = preset_config(preset, data_dir, estimator, m, k, None)
    data = load_dataset(cfg.train.dataset, cfg.train.data_dir, "cpu",
                        cfg.train.max_train_examples, cfg.train.max_test_examples)
    model = build_model(cfg, data)
    step = TrainStep(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, fused=True)
    generator = torch.Generator().manual_seed(0)
    device = torch.device("cpu")
    epoch = _cpu(lambda: epoch_batches(step, optimizer, data, cfg.train.batch_size, generator,
                                       1.0, device), 1)

    def val(mc: bool) -> None:
        with fixed_noise(0, device):
            validation_loss(model, data.val, 1, mc_elbo=mc)

    without, with_mc = _cpu(lambda: val(False), repeats), _cpu(lambda: val(True), repeats)
    return {"train_epoch_cpu_seconds": round(epoch, 3),
            "validation_cpu_seconds": round(without, 4),
            "validation_with_mc_elbo_cpu_seconds": round(with_mc, 4),
            "extra_ratio": round((with_mc - without) / epoch, 4),
            "n_train": data.train.shape[0], "n_val": data.val.shape[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="reproduce_fashion")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--M", type=int, default=3)
    parser.add_argument("--K", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {"preset": args.preset, "M": args.M, "K": args.K,
              "estimators": {e: cost(args.preset, args.data_dir, e, args.M, args.K, args.repeats)
                             for e in ("greedy", "lse", "mc")}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
