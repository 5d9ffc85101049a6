"""Load on the Optuna RDB: a 300-key grid study, 8 trials in flight, against PostgreSQL.

What the driver asks of the RDB per trial is the study searcher's work (`study.optuna_search.
StudySearcher`): ``suggest`` (find orphans, check what is waiting, ``ask`` the enqueued trial),
``on_trial_result`` once per epoch (``trial.report``: optuna-dashboard's curves) and
``on_trial_complete`` (``tell``). This benchmark drives the searcher exactly as Tune does —
through its public Searcher methods, keeping ``--slots`` trials in flight, each reporting
``--epochs`` epochs — with no training, so the seconds measured are the searcher's and the
database's alone. It prints one JSON object: the latency (median, p90, max, ms) of each call
per block of ``--block`` trials (how it grows as the study fills), the searcher's seconds per
trial (all its calls together: the driver's RDB overhead per trial), and the study's size.

The database: ``--url postgresql+psycopg://…`` (an empty database: the study is created
there), or by default a throwaway PostgreSQL cluster started on 127.0.0.1 by the tests' own
helper (`tests/cloud/servers.py`, Debian's ``postgresql`` needed; stopped at the end).
Usage: ``.venv/bin/python benchmarks/bench_rdb.py [--keys 300] [--slots 8] [--epochs 5]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def grid_spec(keys: int, epochs: int, url: str, name: str) -> Any:
    """A digits grid of ``keys`` trials: M in 1..5, K in 6 values, ``keys // 30`` seeds."""
    from study.spec import StudySpec

    if keys % 30:
        raise SystemExit("--keys must be a multiple of 30 (5 Ms x 6 Ks x seeds)")
    return StudySpec.from_dict({
        "study": {"name": name, "storage": tempfile.mkdtemp(prefix="bench-rdb-"),
                  "optuna_storage": url},
        "data": {"dataset": "digits"},
        "search": {"space": "quickstart", "seeds": keys // 30,
                   "grid": {"Ms": [1, 2, 3, 4, 5], "Ks": [5, 10, 20, 30, 40, 50],
                            "include_vae": False}},
        "budget": {"max_epochs": epochs, "patience": epochs},
        "resources": {"cpus_per_trial": 1},
    })


def summarise(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {"median_ms": round(statistics.median(ms), 2),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2), "max_ms": round(ms[-1], 2)}


def drive(spec: Any, slots: int, epochs: int) -> dict[str, Any]:
    """Run the searcher through a whole study, ``slots`` trials in flight."""
    from study.tune.searcher import StudySearcher
    from study.tune.trainable import STATE_KEY

    start = time.perf_counter()
    searcher = StudySearcher({"spec": spec.to_dict(), "budget": spec.search.num_samples})
    setup = time.perf_counter() - start
    calls: dict[str, list[tuple[int, float]]] = {"suggest": [], "result": [], "complete": []}
    in_flight: list[tuple[str, int]] = []  # (tune trial id, epochs reported)
    started = finished = 0
    metric = spec.search.metric
    wall = time.perf_counter()
    while True:
        while len(in_flight) < slots:
            trial_id = f"t{started:05d}"
            t0 = time.perf_counter()
            config = searcher.suggest(trial_id)
            calls["suggest"].append((started, time.perf_counter() - t0))
            if not isinstance(config, dict):
                break
            started += 1
            in_flight.append((trial_id, 0))
        if not in_flight:
            break
        # one epoch for every trial in flight (round robin, as concurrent trials report)
        for i, (trial_id, done) in enumerate(list(in_flight)):
            done += 1
            t0 = time.perf_counter()
            if done <= epochs:
                searcher.on_trial_result(trial_id, {metric: 100.0 / done, "epoch": done})
                calls["result"].append((finished, time.perf_counter() - t0))
                in_flight[i] = (trial_id, done)
            else:
                searcher.on_trial_complete(trial_id, {STATE_KEY: "COMPLETED",
                                                      metric: 100.0 / epochs})
                calls["complete"].append((finished, time.perf_counter() - t0))
                finished += 1
                in_flight[i] = ("", 0)
        in_flight = [t for t in in_flight if t[0]]
    wall = time.perf_counter() - wall
    return {"setup_s": setup, "wall_s": wall, "started": started, "finished": finished,
            "calls": calls}


def report(spec: Any, run: dict[str, Any], block: int, slots: int, epochs: int) -> dict:
    import optuna

    from study.optuna_study import open_storage

    calls = run["calls"]
    blocks = []
    for lo in range(0, run["finished"], block):
        entry: dict[str, Any] = {"trials": f"{lo}-{lo + block - 1}"}
        for name, values in calls.items():
            picked = [s for n, s in values if lo <= n < lo + block]
            if picked:
                entry[name] = summarise(picked)
        blocks.append(entry)
    total = sum(s for values in calls.values() for _, s in values)
    study = optuna.load_study(study_name=spec.name, storage=open_storage(spec))
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "benchmark": "rdb",
        "rdb": "postgresql",
        "keys": spec.search.num_samples, "slots": slots, "epochs_per_trial": epochs,
        "searcher_setup_s": round(run["setup_s"], 3),
        "wall_s": round(run["wall_s"], 2),
        "searcher_s_per_trial": round(total / max(1, run["finished"]), 4),
        "overall": {name: summarise([s for _, s in values]) for name, values in calls.items()},
        "by_block": blocks,
        "optuna_states": states,
        "python": platform.python_version(),
        "host": platform.node(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="an empty PostgreSQL database's URL")
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args(argv)
    server = None
    url = args.url
    if url is None:
        sys.path.insert(0, str(REPO / "tests" / "cloud"))
        from servers import PgServer

        server = PgServer(Path(tempfile.mkdtemp(prefix="bench-pg-")))
        server.start()
        url = server.new_database("bench_" + uuid.uuid4().hex[:8])
    try:
        spec = grid_spec(args.keys, args.epochs, url, "bench_rdb")
        run = drive(spec, args.slots, args.epochs)
        print(json.dumps(report(spec, run, args.block, args.slots, args.epochs), indent=2))
    finally:
        if server is not None:
            server.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
