"""Orchestration overhead of `gmmpvae run` (Ray Tune + Optuna + checkpoints + Parquet).

Runs the same 8 small trainings (the real trainer on scikit-learn's digits) three ways, each a
fresh process timed by the wall clock:

1. back to back in one Python process (`models.trial.run_trial` in a loop): the baseline;
2. ``gmmpvae run`` with ``--max-concurrent 1``: the study pays Ray's start, the trial actors,
   per-epoch reports with checkpoints, Optuna and consolidation — its extra time over the
   baseline, divided by 8, is the overhead per trial (target: at most 2 s);
3. ``gmmpvae run`` with ``--max-concurrent 2``: the speed-up of running two at a time on two
   cores.

Prints one JSON object: wall-clock seconds of each (the least of ``--repeat`` runs), the overhead
per trial, and the speed-up of two at a time both over the whole command and over its trials
phase (first trial start to last trial end, from trials.parquet: Ray's start and the workers'
imports left out). The machine's load average is included: on a shared machine, two trials at
once only go faster when two cores are actually free. Usage:
``.venv/bin/python benchmarks/bench_orchestration.py [--epochs 10] [--repeat 1] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_OVERHEAD_S = 2.0

STUDY = """
[study]
name = "bench"
storage = "{storage}"
[data]
dataset = "digits"
[search]
space = "quickstart"
seeds = 2
[search.grid]
Ms = [1, 2]
Ks = [10, 50]
include_vae = false
[model]
latent_dim = 8
hidden_dim = 64
[budget]
max_epochs = {epochs}
warmup_epochs = 2
patience = {epochs}
is_samples = 100
max_train_examples = 1000
[resources]
cpus_per_trial = 1
[failure]
retries = 0
"""

BASELINE = """
import sys, tempfile, torch
torch.set_num_threads(1)
from models.config import TrialConfig
from models.trial import run_trial
from study.spec import load_spec
plan = load_spec(sys.argv[1]).plan()
with tempfile.TemporaryDirectory() as tmp:
    for i, flat in enumerate(plan):
        flat = {k: v for k, v in flat.items() if k != "trial_key"}
        run_trial(TrialConfig.from_flat(flat), f"{tmp}/{i}")
print(len(plan))
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return seconds, out.stdout


def trial_phase(study: Path) -> tuple[int, float]:
    """(most trials at once, seconds from the first trial start to the last trial end)."""
    sys.path.insert(0, str(REPO))
    from study import store, summary

    records = store.read_records(*store.filesystem(str(study)))
    intervals = summary.record_intervals(records)
    span = (max(e for _, e in intervals) - min(s for s, _ in intervals)).total_seconds()
    return summary.max_overlap(intervals), span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the least counts")
    parser.add_argument("--keep", default=None, help="keep the study folders here")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    python = sys.executable
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep or scratch)
        root.mkdir(parents=True, exist_ok=True)
        spec_file = root / "bench.toml"
        spec_file.write_text(STUDY.format(storage=root / "unused", epochs=args.epochs))

        baselines, studies = [], {1: [], 2: []}
        for attempt in range(args.repeat):
            seconds, out = timed([python, "-c", BASELINE, str(spec_file)], env)
            trials = int(out.strip().splitlines()[-1])
            baselines.append(seconds)
            for concurrent in (1, 2):
                name = f"bench-c{concurrent}-{attempt}"
                study = root / name
                seconds, _ = timed([python, "-m", "study.cli", "run", str(spec_file),
                                    "--storage", str(study), "--name", name,
                                    "--max-concurrent", str(concurrent)], env)
                studies[concurrent].append((seconds, *trial_phase(study)))

    baseline = min(baselines)
    best = {c: min(runs) for c, runs in studies.items()}
    overhead = (best[1][0] - baseline) / trials
    print(json.dumps({
        "trials": trials,
        "epochs_per_trial": args.epochs,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "baseline_one_process_s": round(baseline, 2),
        "study_max_concurrent_1_s": round(best[1][0], 2),
        "study_max_concurrent_2_s": round(best[2][0], 2),
        "overhead_per_trial_s": round(overhead, 2),
        "target_overhead_per_trial_s": TARGET_OVERHEAD_S,
        "meets_target": overhead <= TARGET_OVERHEAD_S,
        "speedup_2_vs_1": round(best[1][0] / best[2][0], 2),
        "trials_phase_s": {"1": round(best[1][2], 2), "2": round(best[2][2], 2)},
        "speedup_2_vs_1_trials_phase": round(best[1][2] / best[2][2], 2),
        "observed_concurrency": {"1": best[1][1], "2": best[2][1]},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }, indent=2))


if __name__ == "__main__":
    main()
