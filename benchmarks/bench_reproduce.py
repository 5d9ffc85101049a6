"""Benchmark: the slowest trials of a reproduction preset at its budget, and the cost of the
collapse diagnostics. Prints JSON.

1. Runs whole trials (`models.trial.run_trial`: data, training, diagnostics, evaluation, files)
   of the preset's most expensive configurations — mlp, M = 3, K = 500 by default — under the
   preset's [model] and [budget] (read from the preset TOML), one per KL estimator, one thread
   each (as one Ray trial with cpus_per_trial = 1), and reports seconds per trial with the
   split train / eval. The preset's total is extrapolated by the caller (README / report).
2. The collapse diagnostics' cost: `models.diagnostics.collapse_diagnostics` on the validation
   set against one training epoch of the same model, timed in the same process (a ratio).

Usage: python benchmarks/bench_reproduce.py [--preset reproduce_fashion] [--data-dir DIR]
       [--estimators greedy,lse,mc] [--M 3] [--K 500] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.config import TrialConfig  # noqa: E402
from models.data import load_dataset  # noqa: E402
from models.diagnostics import collapse_diagnostics  # noqa: E402
from models.training import _train_epoch, build_model  # noqa: E402
from models.trial import run_trial  # noqa: E402
from search_spaces import complete_config  # noqa: E402


def preset_config(preset: str, data_dir: str | None, estimator: str, m: int, k: int,
                  epochs: int | None) -> TrialConfig:
    study = tomllib.loads((ROOT / "study" / "presets" / f"{preset}.toml").read_text())
    data = study["data"]
    model = {**study.get("model", {}), "kl_estimator": estimator, "M": m, "K": k,
             "prior": "pseudo_mixture"}
    budget = dict(study.get("budget", {}))
    if epochs is not None:
        budget["max_epochs"] = epochs
    fields = {"dataset": data["dataset"], "data_dir": data_dir or data.get("data_dir"),
              **budget, **model}
    return TrialConfig.from_flat(complete_config(fields))


def time_trial(cfg: TrialConfig) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), time.process_time()
        metrics = run_trial(cfg, Path(out), resume=False)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
    # One thread: CPU seconds ≈ the wall time on a quiet core, whatever the machine's load.
    return {"seconds": total, "cpu_seconds": cpu, "train_seconds": metrics["train_seconds"],
            "eval_seconds": metrics["eval_seconds"], "epochs": metrics["epochs_run"],
            "test_ll": metrics["test_ll"], "spread_ratio": metrics["spread_ratio"]}


def diagnostics_cost(cfg: TrialConfig) -> dict:
    data = load_dataset(cfg.train.dataset, cfg.train.data_dir, "cpu",
                        cfg.train.max_train_examples, cfg.train.max_test_examples)
    model = build_model(cfg, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    generator = torch.Generator().manual_seed(0)
    start = time.process_time()  # CPU time, one thread: insensitive to other processes
    _train_epoch(model, optimizer, data, cfg.train.batch_size, generator, 1.0, 1,
                 torch.device("cpu"))
    epoch = time.process_time() - start
    start = time.process_time()
    collapse_diagnostics(model, data.val)
    diag = time.process_time() - start
    return {"train_epoch_cpu_seconds": epoch, "diagnostics_cpu_seconds": diag,
            "ratio": diag / epoch, "n_train": data.train.shape[0], "n_val": data.val.shape[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="reproduce_fashion")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--estimators", default="greedy,lse,mc")
    parser.add_argument("--M", type=int, default=3)
    parser.add_argument("--K", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--diagnostics-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict = {"preset": args.preset, "M": args.M, "K": args.K, "trials": {}}
    for estimator in [] if args.diagnostics_only else args.estimators.split(","):
        cfg = preset_config(args.preset, args.data_dir, estimator, args.M, args.K, args.epochs)
        report["trials"][estimator] = time_trial(cfg)
    cfg = preset_config(args.preset, args.data_dir, "greedy", args.M, args.K, args.epochs)
    report["diagnostics"] = diagnostics_cost(cfg)
    report["diagnostics_mc"] = diagnostics_cost(
        preset_config(args.preset, args.data_dir, "mc", args.M, args.K, args.epochs))
    report["budget"] = {k: getattr(cfg.train, k) for k in (
        "max_epochs", "warmup_epochs", "max_train_examples", "max_test_examples", "is_samples")}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

