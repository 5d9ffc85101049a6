"""``gmmpvae status STUDY_DIR``: a study's trials by state and the best so far.

States come from three places, the first that knows a trial wins: its record in its folder
(COMPLETED, ERROR, PRUNED), its running marker (`study.store.running`: RUNNING, or UNFINISHED
when the driver that ran it is gone; a marker newer than the record is a retry running), and
for grids the plan (NOT STARTED; ``plan.parquet``, every budget's trials of an extended
study, `study.extend`), with one line of the trials at each budget. Ray Tune's state is not
read: ``status`` imports no Ray. The Optuna studies' counts (the study's and its extension
steps') are shown beside. The results are
consolidated first (``--no-consolidate`` only reads), so ``results/`` is current.
A trial whose pseudo-input prior collapsed (`models.collapse_rule.is_collapsed` applied to the
record's spread_ratio, resp_perplexity, best_epoch and warmup_epochs — not its stored flag,
which an older rule may have written) is marked ``COLLAPSED`` after its test_ll, and counted
below the list.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from models.collapse_rule import RULE_TEXT, is_collapsed
from study import optuna_study, store, summary
from study.extend import planned_keys, planned_total
from study.recovery import repair
from study.spec import load_study
from study.store import StudyFolder, lock, running

MAX_ROWS = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study folder (or URI)")
    parser.add_argument("--no-consolidate", action="store_true",
                        help="do not rewrite results/ (read-only)")
    parser.add_argument("--all", action="store_true", help=f"list every trial (default: "
                        f"the first {MAX_ROWS})")


def trial_states(records: list[dict[str, Any]], marked: dict[str, str],
                 planned: list[str] | None) -> dict[str, str]:
    """trial_key → state: the record's, else its marker's (`marked_states`), else NOT STARTED
    for a planned key."""
    states = {key: "NOT STARTED" for key in planned or []}
    states.update(marked)
    states.update({r["trial_key"]: r["state"] for r in records})
    return dict(sorted(states.items()))


def marked_states(markers: dict[str, dict[str, Any]], records: list[dict[str, Any]],
                  holder: dict[str, Any] | None) -> dict[str, str]:
    """trial_key → RUNNING or UNFINISHED for the running markers that count
    (`study.store.running.judge`, against the trial's record and the live driver)."""
    by_key = {r["trial_key"]: r for r in records}
    judged = {key: running.judge(m, by_key.get(key), holder) for key, m in markers.items()}
    return {key: state for key, state in judged.items() if state is not None}


def run(args: argparse.Namespace) -> int:
    spec, info = load_study(args.study_dir)
    folder = StudyFolder.open(spec.storage)
    for line in repair.problems(spec, folder):  # named, never changed here: resume repairs
        print(f"gmmpvae status: warning: {line}", file=sys.stderr)
    if args.no_consolidate:
        records = store.read_records(folder.fs, folder.root)
    else:
        records = store.consolidate(folder, spec.name).records
    holder = lock.current_holder(folder.fs, folder.root)
    finished = {r["trial_key"] for r in records if r["state"] in (store.COMPLETED, store.PRUNED)}
    markers = store.read_markers(folder.fs, folder.root, skip=finished)  # ERROR: maybe retried
    marked = marked_states(markers, records, holder)
    current = [r for r in records if r["trial_key"] not in marked]  # not a retry running
    states = trial_states(current, marked, planned_keys(spec, folder))
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
    if holder:
        print(f"driver     running: {lock.describe(holder)}")
    total = planned_total(spec, folder)
    print(f"trials     {total} planned: "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if len({r.get("max_epochs") for r in records}) > 1:
        print(f"budgets    {budget_line(records)}")
    if optuna:
        print("optuna     " + ", ".join(f"{n} {s}" for s, n in sorted(optuna.items())))
    print(f"  {'trial_key':<44} {'state':<11} {'epochs':>6} {'best_val_loss':>13} "
          f"{'test_ll':>10}  error")  # the record's state, else the marker's, else NOT STARTED
    rows = list(states.items())
    now = store.now_utc()
    for key, state in rows if args.all else rows[:MAX_ROWS]:
        if key in marked:  # running (or was): the epochs so far and where, from its marker
            m = markers[key]
            print(f"  {key:<44} {state:<11} {_fmt(m.get('epoch'), 'd'):>6} "
                  f"{_fmt(m.get('best_val_loss'), '.4f'):>13} {'':>10}  "
                  f"{running.describe(m, state, now)}")
            continue
        r = by_key.get(key, {})
        line = (f"  {key:<44} {state:<11} {_fmt(r.get('epochs_run'), 'd'):>6} "
                f"{_fmt(r.get('best_val_loss'), '.4f'):>13} {_fmt(r.get('test_ll'), '.4f'):>10}"
                f"{' COLLAPSED' if _collapsed(r) else ''}  {(r.get('error') or '')[:80]}")
        print(line.rstrip())
    if not args.all and len(rows) > MAX_ROWS:
        print(f"  … {len(rows) - MAX_ROWS} more (--all lists them)")
    lost = [markers[key] for key, state in marked.items() if state == running.UNFINISHED]
    if lost:
        then = ("the running driver continues them" if holder is not None
                else f"continue with `gmmpvae resume {spec.storage}`")
        print(f"unfinished {len(lost)} trial(s) were running when their driver stopped (last "
              f"seen {running.last_seen(lost)}): {then}")
    flagged = [r for r in current if _collapsed(r) is not None]
    if flagged:
        n = sum(bool(_collapsed(r)) for r in flagged)
        print(f"collapsed  {n} of {len(flagged)} pseudo-mixture trials have a collapsed prior "
              f"({RULE_TEXT})")
    metric = spec.search.metric
    column = "best_val_loss" if metric == "val_loss" else metric
    best = summary.best_records(records, column, spec.search.mode)
    for name, record in ((column, best["metric"]), ("test_ll", best["test_ll"])):
        text = (f"{record['trial_key']} ({name} {record[name]:.4f})" if record
                else "none completed yet")
        print(f"best by {name}: {text}")
    return 0


def budget_line(records: list[dict[str, Any]]) -> str:
    """The trials recorded at each budget (``max_epochs``), and how the larger ones got
    there: continued from the budget before, or carried (their result kept)."""
    parts = []
    for budget in sorted({int(r["max_epochs"]) for r in records if r.get("max_epochs")}):
        at = [r for r in records if r.get("max_epochs") == budget]
        how = [f"{n} {word}" for word, n in (
            ("continued", sum(bool(r.get("continued_from")) for r in at)),
            ("carried", sum(bool(r.get("carried_from")) for r in at))) if n]
        parts.append(f"{budget} epochs: {len(at)} trials" + (f" ({', '.join(how)})"
                                                             if how else ""))
    return "; ".join(parts)


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else ""


def _collapsed(record: dict[str, Any]) -> bool | None:
    return is_collapsed(record.get("spread_ratio"), record.get("resp_perplexity"),
                        record.get("best_epoch"), record.get("warmup_epochs"))
