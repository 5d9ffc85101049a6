"""What a study is and what it did, in words: the dry run (`describe`), the end-of-run report
(`summary_lines`), and the small computations behind them (best trials, overlap of trials)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from search_spaces import KEY_FIELD
from study.errors import RESUMABLE_EXIT
from study.outcome import Outcome
from study.spec import StudySpec
from study.spec.sections import EPOCH_METRICS
from study.store import COMPLETED, EPOCHS_FILE, RESULTS_DIR, filesystem, join


def describe(spec: StudySpec) -> str:
    """The human summary that ``gmmpvae run --dry-run`` prints (grids: every trial)."""
    s, r, sch = spec.search, spec.resources, spec.scheduler
    space = spec.search_space
    optuna_where = (f"journal file {spec.optuna_storage_url}"
                    if spec.optuna_storage_is_journal else spec.optuna_storage_url)
    sched = "fifo (every trial runs to its own early stop)" if sch.kind == "fifo" else (
        f"asha (grace_period {sch.grace_period}, reduction_factor {sch.reduction_factor:g}, "
        f"max_t {sch.max_t})")
    fixed = ", ".join(f"{k}={v}" for k, v in sorted(spec.fixed_trial_fields().items()))
    plan = spec.plan()
    lines = [
        f"study      {spec.name}  ({spec.source or 'from dict'})",
        f"storage    {spec.storage}",
        f"optuna     {optuna_where}",
        f"ray        {'start Ray here' if spec.study.address is None else spec.study.address}",
        f"search     space '{s.space}' ({space.kind}): {space.description}",
        f"           sampler {s.sampler}"
        + (f" (seed {s.sampler_seed})" if s.sampler_seed is not None else "")
        + f", {s.seeds} seed(s), {len(plan) if plan is not None else s.num_samples} trials, "
        f"metric {s.metric} ({s.mode})",
    ]
    if s.grid:
        lines.append(f"           grid {json.dumps(s.grid)}")
    lines += [
        f"fixed      {fixed or '(none)'}",
        f"scheduler  {sched}",
        f"resources  {r.cpus_per_trial:g} CPU + {r.gpus_per_trial:g} GPU per trial, "
        f"max_concurrent {r.max_concurrent or 'as many as fit'}",
        f"failure    {spec.failure.retries} retries per trial",
    ]
    if plan is None:
        searched = [p for p in space.searched if p not in spec.fixed_trial_fields()]
        lines.append(f"trials     up to {s.num_samples}, sampled by {s.sampler} over "
                     f"{', '.join(searched) or 'nothing (every field is fixed)'}")
        return "\n".join(lines)
    lines.append(f"trials     {len(plan)}:")
    lines.append(f"  {'#':>4}  {'trial_key':<40} {'dataset':<13} {'arch':<5} "
                 f"{'prior':<14} {'M':>1}  {'K':>4} {'seed':>4}  pi")
    for i, t in enumerate(plan, 1):
        pi = "[" + ", ".join(f"{p:.4g}" for p in t["pi"]) + "]"
        lines.append(f"  {i:>4}  {t[KEY_FIELD]:<40} {t['dataset']:<13} {t['arch']:<5} "
                     f"{t['prior']:<14} {t['M']:>1}  {t['K']:>4} {t['seed']:>4}  {pi}")
    return "\n".join(lines)


def summary_lines(spec: StudySpec, outcome: Outcome) -> list[str]:
    """The end-of-run report."""
    c = outcome.consolidated
    states = ", ".join(f"{n} {s}" for s, n in sorted(c.states.items())) or "none"
    lines = [
        f"study {spec.name}: {c.trials} trial(s) recorded ({states}) in {outcome.seconds:.1f} s",
        f"results    {join(outcome.study_dir, RESULTS_DIR)}: trials.parquet "
        f"{c.trials} rows, epochs.parquet {c.epochs}, test_ll.parquet {c.test_ll}",
        f"concurrency up to {outcome.observed_concurrency} trial(s) ran at once "
        f"(max_concurrent {outcome.max_concurrent}, {outcome.slots} slot(s))",
    ]
    lines += device_lines(c.records)
    if outcome.optuna:
        lines.append("optuna     " + ", ".join(f"{n} {s}"
                                              for s, n in sorted(outcome.optuna.items())))
    missing = spec.search.num_samples - c.trials
    if missing > 0:
        lines.append(f"unfinished {missing} trial(s) have no record yet: continue with "
                     f"`gmmpvae resume {outcome.study_dir}`")
    metric = spec.search.metric
    column = "best_val_loss" if metric == "val_loss" else metric
    records = with_last_epoch(c.records, column, outcome.study_dir)
    best = best_records(records, column, spec.search.mode)
    for label, record, name in (("best", best["metric"], column),
                                ("best", best["test_ll"], "test_ll")):
        if record is not None:
            lines.append(f"{label:<10} by {name}: {record['trial_key']} ({name} "
                         f"{record[name]:.4f})")
    if best["metric"] is None:
        lines.append(f"best       by {column}: no completed trial has a value of it")
    return lines


def with_last_epoch(records: Sequence[dict[str, Any]], metric: str, study_dir: str
                    ) -> list[dict[str, Any]]:
    """``records`` with ``metric`` added from each trial's last epoch of the consolidated
    epochs.parquet when it is an epoch metric the record lacks (``val_elbo_mc``, ``val_re``,
    …): the value the trial's final result told the searcher. Records unchanged otherwise,
    or when the file cannot be read (the summary then says no trial has a value)."""
    if metric not in EPOCH_METRICS or any(metric in r for r in records):
        return list(records)
    try:
        fs, root = filesystem(study_dir)
        table = pq.read_table(join(root, RESULTS_DIR, EPOCHS_FILE), filesystem=fs,
                              columns=["trial_key", "epoch", metric])
    except (OSError, pa.ArrowInvalid, KeyError):
        return list(records)
    last: dict[str, tuple[int, Any]] = {}
    for key, epoch, value in zip(*(table.column(c).to_pylist() for c in table.column_names),
                                 strict=True):
        if value is not None and (key not in last or epoch > last[key][0]):
            last[key] = (epoch, value)
    return [{**r, metric: last[r["trial_key"]][1]} if r.get("trial_key") in last else r
            for r in records]


def device_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """The end summary's lines on where trials ran: per device, the trials and (on GPUs) the
    largest and mean peak of GPU memory per trial."""
    by_device: dict[str, list[float | None]] = {}
    for record in records:
        if record.get("device"):
            by_device.setdefault(str(record["device"]), []).append(
                record.get("gpu_memory_peak_mb"))
    lines = []
    for device, peaks in sorted(by_device.items()):
        line = f"device     {device}: {len(peaks)} trial(s)"
        known = [p for p in peaks if p is not None]
        if known:
            line += (f", GPU memory peak per trial max {max(known):.0f} MiB, "
                     f"mean {sum(known) / len(known):.0f} MiB")
        lines.append(line)
    return lines



def max_overlap(intervals: Iterable[tuple[Any, Any]]) -> int:
    """The largest number of intervals (start, end) open at one instant; an interval ending
    exactly when another starts does not overlap it."""
    events = []
    for start, end in intervals:
        if start is None or end is None:
            continue
        events.append((start, 1))
        events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # ends before starts at the same instant
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def record_intervals(records: Iterable[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    """(started_at, ended_at) of records, as datetimes."""
    out = []
    for r in records:
        if r.get("started_at") and r.get("ended_at"):
            out.append((datetime.fromisoformat(r["started_at"]),
                        datetime.fromisoformat(r["ended_at"])))
    return out


def best_records(records: Sequence[dict[str, Any]], metric: str = "best_val_loss",
                 mode: str = "min") -> dict[str, dict[str, Any] | None]:
    """The best completed trial by ``metric`` (``mode`` min/max) and by test_ll (max)."""
    done = [r for r in records if r.get("state") == COMPLETED]

    def pick(name: str, sign: float) -> dict[str, Any] | None:
        scored = [r for r in done if isinstance(r.get(name), int | float)]
        return min(scored, key=lambda r: sign * r[name]) if scored else None

    return {"metric": pick(metric, 1.0 if mode == "min" else -1.0),
            "test_ll": pick("test_ll", -1.0)}


STRANDED_EXIT = RESUMABLE_EXIT  # no node could hold a trial: resumable, not bad input


def stranded_exit(spec: Any, outcome: Any) -> int:
    """0, or (after one line on stderr saying how to resume) `STRANDED_EXIT` when the study
    ended because no node could hold one of its trials for ``failure.stranded_grace``."""
    if not getattr(outcome, "stranded", False):
        return 0
    done = sum(outcome.consolidated.states.values())
    left = max(0, spec.search.num_samples - done)
    print(f"gmmpvae: stopped: no node could hold a trial for {spec.failure.stranded_grace:g} s "
          f"(every worker lost?); {left} trial(s) unfinished, results consolidated; continue "
          f"with `gmmpvae resume {spec.storage}` once nodes are back", file=sys.stderr)
    return STRANDED_EXIT
