"""Benchmark: packing trials on a GPU. The same small study at several ``gpus_per_trial``; JSON.

For each value of ``--gpus-per-trial`` (default 1, 0.5, 0.25, 0.125) it runs one study with
``gmmpvae run`` (a fresh private Ray, as a user would) — the table1 grid on Fashion-MNIST
restricted to mlp, M ∈ {1, 2}, K ∈ {100, 500}, ``--seeds`` seeds (4: 16 trials), a few epochs
on a subset (``--epochs``, ``--train-examples``, ``--test-examples``, ``--is-samples``) — and
reports: wall seconds of the whole run (Ray's start included, the same for every setting),
trials per hour, the most trials that ran at once (from the records' start/end times), each
trial's device and GPU-memory peak (trials.parquet), and the GPU utilisation sampled every
0.5 s by ``nvidia-smi`` during the run (mean and mean over samples > 0; null without
nvidia-smi). ``--cpu-dry-run`` runs the same pipeline on CPU with ``gpus_per_trial = 0``, digits
and 2 trials, to check the script end to end on a machine without a GPU.

Usage: python benchmarks/bench_packing.py [--gpus-per-trial 1 0.5 0.25 0.125] [--data-dir DIR]
       [--cpu-dry-run] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "datasets"
SMI_QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
             "--format=csv,noheader,nounits", "-lms", "500"]


def study_toml(name: str, dataset: str, data_dir: Path | None, gpus: float, seeds: int,
               epochs: int, train_examples: int, test_examples: int, is_samples: int,
               precision: str, ks: list[int]) -> str:
    data_line = f'data_dir = "{data_dir}"\n' if data_dir else ""
    return f"""[study]
name = "{name}"

[data]
{data_line}
[search]
space = "table1"
sampler = "grid"
seeds = {seeds}

[search.grid]
datasets = ["{dataset}"]
archs = ["mlp"]
Ms = [1, 2]
Ks = {json.dumps(ks)}
include_vae = false

[budget]
max_epochs = {epochs}
warmup_epochs = 1
patience = {epochs + 1}
is_samples = {is_samples}
max_train_examples = {train_examples}
max_test_examples = {test_examples}
precision = "{precision}"

[scheduler]
kind = "fifo"

[resources]
cpus_per_trial = 1
gpus_per_trial = {gpus}

[failure]
retries = 0
"""


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, delta in events:
        now += delta
        best = max(best, now)
    return best


def run_setting(gpus: float, args: argparse.Namespace, work: Path, timeout: float) -> dict:
    """One study at ``gpus`` GPUs per trial; its figures."""
    name = f"packing_g{gpus:g}".replace(".", "p")
    storage = work / name
    shutil.rmtree(storage, ignore_errors=True)
    toml = work / f"{name}.toml"
    toml.write_text(study_toml(name, args.dataset, args.data_dir, gpus, args.seeds, args.epochs,
                               args.train_examples, args.test_examples, args.is_samples,
                               args.precision, args.Ks), encoding="utf-8")
    smi = None
    samples_file = work / f"{name}.smi.csv"
    if shutil.which("nvidia-smi"):
        smi = subprocess.Popen(SMI_QUERY, stdout=samples_file.open("w"),
                               stderr=subprocess.DEVNULL)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "study.cli", "run", str(toml), "--storage",
                           str(storage)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.perf_counter() - start
    if smi is not None:
        smi.terminate()
        smi.wait(timeout=10)
    row: dict = {"gpus_per_trial": gpus, "rc": proc.returncode, "wall_seconds": round(seconds, 1),
                 "summary": proc.stdout.strip().splitlines()[-8:],
                 "stderr_tail": proc.stderr.strip().splitlines()[-5:]}
    trials_file = storage / "results" / "trials.parquet"
    if trials_file.is_file():
        import pyarrow.parquet as pq

        trials = pq.read_table(trials_file).to_pylist()
        done = [t for t in trials if t["state"] == "COMPLETED"]
        row.update({
            "trials": len(trials), "completed": len(done),
            "trials_per_hour": round(3600 * len(done) / seconds, 1),
            "max_trials_at_once": _max_overlap([(t["started_at"], t["ended_at"])
                                                for t in trials
                                                if t["started_at"] and t["ended_at"]]),
            "devices": sorted({str(t["device"]) for t in trials}),
            "gpu_memory_peak_mb": [t.get("gpu_memory_peak_mb") for t in trials],
            "train_seconds_mean": round(sum(t["train_seconds"] or 0 for t in trials)
                                        / max(1, len(trials)), 2),
        })
    util = []
    if samples_file.is_file():
        for line in samples_file.read_text().splitlines():
            try:
                util.append(float(line.split(",")[0]))
            except (ValueError, IndexError):
                continue
    row["gpu_util_samples"] = len(util)
    row["gpu_util_mean_percent"] = round(sum(util) / len(util), 1) if util else None
    busy = [u for u in util if u > 0]
    row["gpu_util_mean_busy_percent"] = round(sum(busy) / len(busy), 1) if busy else None
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus-per-trial", type=float, nargs="+",
                        default=[1.0, 0.5, 0.25, 0.125])
    parser.add_argument("--data-dir", type=Path,
                        default=SHARED_DATA if SHARED_DATA.is_dir() else None)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--Ks", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-examples", type=int, default=5000)
    parser.add_argument("--test-examples", type=int, default=500)
    parser.add_argument("--is-samples", type=int, default=200)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "tf32"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per study")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for all settings: each study gets at most what is left, "
                        "a setting with less than 20 s left is skipped (reported as such)")
    parser.add_argument("--work", type=Path, help="folder for the studies (default: a temp)")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="gpus_per_trial 0, digits, 2 trials: check the pipeline on CPU")
    args = parser.parse_args(argv)
    if args.cpu_dry_run:
        args.gpus_per_trial, args.dataset, args.seeds, args.Ks = [0.0], "digits", 1, [10]
        args.train_examples, args.test_examples, args.is_samples = 300, 50, 50
        args.precision = "bf16"
    work = args.work or Path(tempfile.mkdtemp(prefix="gmmpvae-packing-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "packing", "dataset": args.dataset, "seeds": args.seeds,
              "epochs": args.epochs, "train_examples": args.train_examples,
              "precision": args.precision, "cpu_count": os.cpu_count(),
              "nvidia_smi": shutil.which("nvidia-smi") is not None, "settings": []}
    began = time.perf_counter()
    for gpus in args.gpus_per_trial:
        limit = args.timeout
        if args.budget is not None:
            limit = min(limit, args.budget - (time.perf_counter() - began))
            if limit < 20:
                report["settings"].append({"gpus_per_trial": gpus, "rc": "skipped (budget)"})
                continue
        try:
            report["settings"].append(run_setting(gpus, args, work, limit))
        except subprocess.TimeoutExpired:
            report["settings"].append({"gpus_per_trial": gpus, "rc": f"timeout ({limit:.0f} s)"})
        print(f"done gpus_per_trial={gpus}", file=sys.stderr, flush=True)
    rates = {s["gpus_per_trial"]: s.get("trials_per_hour") for s in report["settings"]}
    base = rates.get(1.0)
    if base:
        report["trials_per_hour_vs_one_gpu_per_trial"] = {
            str(g): round(r / base, 2) for g, r in rates.items() if r}
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
