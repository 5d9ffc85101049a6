"""``gmmpvae status STUDY_DIR``: a study's trials by state and the best so far.

States come from three places, the first that knows a trial wins: its record in its folder
(COMPLETED, ERROR, PRUNED), Ray Tune's saved experiment state (RUNNING, PENDING, …), and for
grids the plan (NOT STARTED). The Optuna study's own counts are shown beside. The results are
consolidated first (``--no-consolidate`` only reads), so ``results/`` is current.
A trial whose pseudo-input prior collapsed (record field ``collapsed``: spread ratio < 0.05,
models.diagnostics) is marked ``COLLAPSED`` after its test_ll, and counted below the list.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from search_spaces import KEY_FIELD
from study import optuna_study, store, summary
from study.recovery import repair
from study.spec import load_study
from study.store import StudyFolder, lock
from study.tune import session as ray_session

MAX_ROWS = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study folder (or URI)")
    parser.add_argument("--no-consolidate", action="store_true",
                        help="do not rewrite results/ (read-only)")
    parser.add_argument("--all", action="store_true", help=f"list every trial (default: "
                        f"the first {MAX_ROWS})")


def trial_states(records: list[dict[str, Any]], tune: dict[str, str],
                 planned: list[str] | None) -> dict[str, str]:
    """trial_key → state: the record's, else Tune's, else NOT STARTED for a planned key."""
    states = {key: "NOT STARTED" for key in planned or []}
    states.update(tune)
    states.update({r["trial_key"]: r["state"] for r in records})
    return dict(sorted(states.items()))


def run(args: argparse.Namespace) -> int:
    spec, info = load_study(args.study_dir)
    folder = StudyFolder.open(spec.storage)
    for line in repair.problems(spec, folder):  # named, never changed here: resume repairs
        print(f"gmmpvae status: warning: {line}", file=sys.stderr)
    if args.no_consolidate:
        records = store.read_records(folder.fs, folder.root)
    else:
        records = store.consolidate(folder, spec.name).records
    tune = ray_session.tune_states(spec.storage)
    plan = spec.plan()
    states = trial_states(records, tune, [t[KEY_FIELD] for t in plan] if plan else None)
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    by_key = {r["trial_key"]: r for r in records}
    try:
        optuna = optuna_study.counts(spec)
    except Exception as exc:  # a damaged journal / unreachable RDB: named above or here
        optuna = {}
        print(f"gmmpvae status: warning: the Optuna study cannot be read: "
              f"{store.one_line(exc)[:200]}", file=sys.stderr)
    print(f"study {spec.name}  ({spec.storage}; git {info.get('git_rev', 'unknown')[:12]})")
    holder = lock.current_holder(folder.fs, folder.root)
    if holder:
        print(f"driver     running: {lock.describe(holder)}")
    total = spec.search.num_samples
    print(f"trials     {total} planned: "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if optuna:
        print("optuna     " + ", ".join(f"{n} {s}" for s, n in sorted(optuna.items())))
    print(f"  {'trial_key':<44} {'state':<11} {'epochs':>6} {'best_val_loss':>13} "
          f"{'test_ll':>10}  error")  # the record's state, else Tune's, else NOT STARTED
    rows = list(states.items())
    for key, state in rows if args.all else rows[:MAX_ROWS]:
        r = by_key.get(key, {})
        line = (f"  {key:<44} {state:<11} {_fmt(r.get('epochs_run'), 'd'):>6} "
                f"{_fmt(r.get('best_val_loss'), '.4f'):>13} {_fmt(r.get('test_ll'), '.4f'):>10}"
                f"{' COLLAPSED' if r.get('collapsed') else ''}  {(r.get('error') or '')[:80]}")
        print(line.rstrip())
    if not args.all and len(rows) > MAX_ROWS:
        print(f"  … {len(rows) - MAX_ROWS} more (--all lists them)")
    flagged = [r for r in records if r.get("collapsed") is not None]
    if flagged:
        n = sum(bool(r["collapsed"]) for r in flagged)
        print(f"collapsed  {n} of {len(flagged)} pseudo-mixture trials have a collapsed prior "
              f"(spread ratio < 0.05)")
    metric = spec.search.metric
    column = "best_val_loss" if metric == "val_loss" else metric
    best = summary.best_records(records, column, spec.search.mode)
    for name, record in ((column, best["metric"]), ("test_ll", best["test_ll"])):
        text = (f"{record['trial_key']} ({name} {record[name]:.4f})" if record
                else "none completed yet")
        print(f"best by {name}: {text}")
    return 0


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)
