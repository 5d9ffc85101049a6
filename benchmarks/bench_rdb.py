"""Load on the Optuna RDB: a 300-key grid study, 8 trials in flight, against PostgreSQL — as
ratios to baselines run in the same process, and as absolute latencies.

What the driver asks of the RDB per trial is the study searcher's work
(`study.tune.searcher.StudySearcher`): ``suggest`` (adopt an orphan, else ``ask`` the next
enqueued trial and record its parameters), ``on_trial_result`` once per epoch
(``trial.report``: optuna-dashboard's curves) and ``on_trial_complete`` (``tell``). This
benchmark drives the searcher exactly as Tune does — through its public Searcher methods,
keeping ``--slots`` trials in flight, each reporting ``--epochs`` epochs — with no training, so
the seconds measured are the searcher's and the storage's alone. The same workload runs three
times, each on a fresh study:

- ``postgresql``: the searcher as it is;
- ``journal``: the same on the local Optuna journal (the default storage of a study folder);
- ``postgresql_old_pattern``: the searcher as it is plus, before each ``suggest``, the two reads
  the searcher made per call before issue 17 B (every RUNNING trial, to find orphans; every
  WAITING trial, to know whether one waits) — the old call pattern's cost on the same server.

It prints one JSON object: per run, the latency (median, p90, max, ms) of each call overall and
per block of ``--block`` trials (how it grows as the study fills), the searcher's seconds per
trial (all its calls together: the driver's storage overhead per trial) and the study's states;
then ``ratios``: ``postgresql`` over ``journal`` and ``postgresql_old_pattern`` over
``postgresql``, of the medians per call and of the seconds per trial, overall and per block.

The database: ``--url postgresql+psycopg://…`` (an empty database: the studies are created
there, one name per run), or by default a throwaway PostgreSQL cluster started on 127.0.0.1 by
the tests' own helper (`tests/cloud/servers.py`, Debian's ``postgresql`` needed; stopped at the
end). ``--runs`` picks the runs (default all three). Usage: ``.venv/bin/python
benchmarks/bench_rdb.py [--keys 300] [--slots 8] [--epochs 5] [--runs postgresql,journal]``.
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


def old_reads(spec: Any) -> Any:
    """The reads the searcher made before each ``suggest`` before issue 17 B, on a study of its
    own (Optuna's public API): every RUNNING trial, then every WAITING one."""
    import optuna
    from optuna.trial import TrialState

    from study.optuna_study import open_storage

    study = optuna.load_study(study_name=spec.name, storage=open_storage(spec))

    def reads() -> None:
        study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return reads


def drive(spec: Any, slots: int, epochs: int, old_pattern: bool = False) -> dict[str, Any]:
    """Run the searcher through a whole study, ``slots`` trials in flight."""
    from study.tune.searcher import StudySearcher
    from study.tune.trainable import STATE_KEY

    start = time.perf_counter()
    searcher = StudySearcher({"spec": spec.to_dict(), "budget": spec.search.num_samples})
    setup = time.perf_counter() - start
    extra = old_reads(spec) if old_pattern else None
    calls: dict[str, list[tuple[int, float]]] = {"suggest": [], "result": [], "complete": []}
    in_flight: list[tuple[str, int]] = []  # (tune trial id, epochs reported)
    started = finished = 0
    metric = spec.search.metric
    wall = time.perf_counter()
    while True:
        while len(in_flight) < slots:
            trial_id = f"t{started:05d}"
            t0 = time.perf_counter()
            if extra is not None:
                extra()
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


def report(spec: Any, run: dict[str, Any], block: int) -> dict[str, Any]:
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
        entry["searcher_s_per_trial"] = round(
            sum(s for values in calls.values() for n, s in values if lo <= n < lo + block)
            / max(1, min(block, run["finished"] - lo)), 4)
        blocks.append(entry)
    total = sum(s for values in calls.values() for _, s in values)
    study = optuna.load_study(study_name=spec.name, storage=open_storage(spec))
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "searcher_setup_s": round(run["setup_s"], 3),
        "wall_s": round(run["wall_s"], 2),
        "searcher_s_per_trial": round(total / max(1, run["finished"]), 4),
        "overall": {name: summarise([s for _, s in values]) for name, values in calls.items()},
        "by_block": blocks,
        "optuna_states": states,
    }


def ratio(over: dict[str, Any], under: dict[str, Any]) -> dict[str, Any]:
    """``over`` / ``under``: the medians of each call and the seconds per trial, overall and
    per block."""
    def of(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        out = {name: round(a[name]["median_ms"] / b[name]["median_ms"], 2)
               for name in ("suggest", "result", "complete")
               if name in a and name in b and b[name]["median_ms"] > 0}
        if "searcher_s_per_trial" in a and b.get("searcher_s_per_trial"):
            out["per_trial"] = round(a["searcher_s_per_trial"] / b["searcher_s_per_trial"], 2)
        return out

    overall = of({**over["overall"], "searcher_s_per_trial": over["searcher_s_per_trial"]},
                 {**under["overall"], "searcher_s_per_trial": under["searcher_s_per_trial"]})
    blocks = [{"trials": a["trials"], **of(a, b)}
              for a, b in zip(over["by_block"], under["by_block"], strict=False)]
    return {"overall": overall, "by_block": blocks}


RUNS = ("postgresql", "journal", "postgresql_old_pattern")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="an empty PostgreSQL database's URL")
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--runs", default=",".join(RUNS),
                        help=f"comma-separated, of {', '.join(RUNS)}")
    args = parser.parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not runs or set(runs) - set(RUNS):
        raise SystemExit(f"--runs: of {', '.join(RUNS)}")
    server = None
    if args.url is None and any(r.startswith("postgresql") for r in runs):
        sys.path.insert(0, str(REPO / "tests" / "cloud"))
        from servers import PgServer

        server = PgServer(Path(tempfile.mkdtemp(prefix="bench-pg-")))
        server.start()

    def url_for(run: str) -> str:
        if run == "journal":
            return str(Path(tempfile.mkdtemp(prefix="bench-journal-")) / "optuna.journal")
        if server is not None:  # one database per run
            return server.new_database(f"bench_{uuid.uuid4().hex[:8]}")
        return args.url

    try:
        results: dict[str, Any] = {}
        for run in runs:
            spec = grid_spec(args.keys, args.epochs, url_for(run),
                             f"bench_rdb_{run}_{uuid.uuid4().hex[:6]}")
            drove = drive(spec, args.slots, args.epochs, old_pattern=run.endswith("old_pattern"))
            results[run] = report(spec, drove, args.block)
        ratios = {}
        if "postgresql" in results and "journal" in results:
            ratios["postgresql_over_journal"] = ratio(results["postgresql"], results["journal"])
        if "postgresql" in results and "postgresql_old_pattern" in results:
            ratios["old_pattern_over_postgresql"] = ratio(results["postgresql_old_pattern"],
                                                          results["postgresql"])
        print(json.dumps({"benchmark": "rdb", "keys": args.keys, "slots": args.slots,
                          "epochs_per_trial": args.epochs, "block": args.block,
                          "ratios": ratios, "runs": results,
                          "python": platform.python_version(), "host": platform.node()},
                         indent=2))
    finally:
        if server is not None:
            server.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
