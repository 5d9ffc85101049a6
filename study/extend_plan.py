"""What ``gmmpvae extend STUDY --max-epochs N --seeds S`` does to a finished study: a pure plan
from the study's records, before anything is written (docs/BUDGETS.md).

A study holds every configuration at every budget it has reached (``max_epochs``; one trial key
per configuration and budget, `search_spaces.trial_key`). Extending it brings every
configuration — the ones it has and, with ``--seeds``, the grid's new seeds — to every budget
of the chain: the budgets it holds plus N. A configuration reaches a budget b from its trial at
the budget before b in the chain:

- that trial ran to its ``max_epochs`` without stopping early: it **continues** from its last
  checkpoint to b (exact: `models.training`);
- it ended before its budget — stopped early, pruned, errored —: its result is **carried** to b
  unchanged (a carried record, `study.store.carried_record`): an exact run to b would have
  stopped the same way (pruning and errors: kept as they were, said so);
- it has none (a new seed at the chain's first budget): **fresh**, trained from scratch.

A budget's trials depend on the budget before, so the plan is made one step at a time:
`plan_extend` returns the chain and its next step (the smallest budget some configuration
lacks); the caller runs it, consolidates, and plans again from the records, until no step is
left. Planning from the records makes a crashed extension resumable: the same request planned
again finds what is done and plans the rest. New seeds pass through every budget (their
smaller budgets cost one evaluation each), so every budget holds every seed.

Refused, in one line (`UsageError`, exit 2, before anything is written): no request; a
``max_epochs`` below the study's largest budget; ``--seeds`` for an open search, fewer seeds
than the study has, or a grid that is not the study's; a planned trial without a result
(finish the study with ``gmmpvae resume`` first — unless ``resuming`` the same extension
after a crash: its planned trials are planned again, by the same keys); a trial to continue
whose last checkpoint is gone (named, before the first step). No Ray, no
Optuna, no torch: the caller reads the records (`study.store.read_records`), the plan rows
and which checkpoints are left (`checkpoints_left`); a continued trial starts from its source's
checkpoint with `start_from_source`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from search_spaces import KEY_FIELD, complete_config, config_key, trial_key
from study import store
from study.errors import UsageError

# A trial folder's last training checkpoint (models.trial's CHECKPOINT_DIR / models.checkpoint's
# CHECKPOINT_FILE, which import torch; a test checks they agree).
CHECKPOINT = "checkpoint/checkpoint.pt"
FRESH, CONTINUE, CARRY = "fresh", "continue", "carry"


@dataclass(frozen=True)
class Planned:
    """One (configuration, budget) to add: its key and complete flat config at the budget;
    ``source``: the trial it continues from (continue) or whose result it repeats (carry);
    ``reason``: why a carried trial keeps its result."""

    how: str  # FRESH, CONTINUE or CARRY
    trial_key: str
    config: dict[str, Any]
    source: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Step:
    """The trials that bring every configuration to ``max_epochs``."""

    max_epochs: int
    trials: tuple[Planned, ...]

    def of(self, how: str) -> list[Planned]:
        return [t for t in self.trials if t.how == how]


@dataclass(frozen=True)
class ExtendPlan:
    """The chain of budgets every configuration will hold, and the next step (None: done)."""

    budgets: tuple[int, ...]
    configurations: int
    seeds: int | None  # the grid's seeds after the extension (None: an open search)
    step: Step | None

    def lines(self) -> list[str]:
        """What the next step does, for people (a dry run, the driver's first lines)."""
        chain = " -> ".join(str(b) for b in self.budgets)
        head = f"budgets {chain} epochs, {self.configurations} configurations each"
        if self.seeds is not None:
            head += f" ({self.seeds} seeds)"
        if self.step is None:
            return [head, "nothing left to run: every configuration holds every budget"]
        step = self.step
        counts = (f"{len(step.of(CONTINUE))} continue from their last checkpoint, "
                  f"{len(step.of(CARRY))} keep their result, "
                  f"{len(step.of(FRESH))} new from scratch")
        out = [head, f"next: max_epochs={step.max_epochs}: {counts}"]
        out += [f"  keep {t.trial_key}: {t.reason}" for t in step.of(CARRY)]
        return out


def plan_extend(
    records: Sequence[dict[str, Any]],
    plan_rows: Sequence[dict[str, Any]],
    *,
    max_epochs: int | None = None,
    seeds: int | None = None,
    grid: Callable[[int], list[dict[str, Any]]] | None = None,
    checkpoints: Collection[str] = (),
    resuming: bool = False,
) -> ExtendPlan:
    """The plan that brings the study to ``max_epochs`` and/or ``seeds`` (module doc).

    ``records``: the study's trial records (trial.json, or trials.parquet rows); ``plan_rows``:
    its plan.parquet rows; ``grid(seeds)``: the grid's complete configs at that many seeds
    (None for an open search); ``checkpoints``: the trial keys whose last checkpoint is left;
    ``resuming``: the same request again after a crash, whose planned trials without a result
    are planned again (without it they are refused: finish the study first).
    Raises `UsageError` (one line) for what cannot be done."""
    if max_epochs is None and seeds is None:
        raise UsageError("extend needs --max-epochs N and/or --seeds S: nothing to extend")
    for flag, value in (("--max-epochs", max_epochs), ("--seeds", seeds)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise UsageError(f"{flag} {value!r} is invalid: expected an integer >= 1")
    if not records:
        raise UsageError("the study has no finished trial to extend: run it first")
    by_key = {r["trial_key"]: r for r in records}
    unfinished = [row["trial_key"] for row in plan_rows if row["trial_key"] not in by_key]
    if unfinished and not resuming:
        raise UsageError(
            f"{len(unfinished)} planned trials have no result yet (first: {unfinished[0]}): "
            "finish the study with `gmmpvae resume` before extending it")

    held: dict[str, dict[int, dict[str, Any]]] = {}  # config_key → budget → record
    configs: dict[str, dict[str, Any]] = {}  # config_key → its complete config (any budget)
    budgets = set() if max_epochs is None else {max_epochs}
    for row in [*records, *plan_rows]:
        config = complete_config(store.record_config(row))
        ckey = config_key(config)
        configs.setdefault(ckey, config)
        budgets.add(int(config["max_epochs"]))
        if row["trial_key"] in by_key:
            held.setdefault(ckey, {})[int(config["max_epochs"])] = by_key[row["trial_key"]]
    largest = max(b for budgets_ in held.values() for b in budgets_)
    if max_epochs is not None and max_epochs < largest:
        raise UsageError(
            f"--max-epochs {max_epochs} is smaller than the study's largest budget, {largest} "
            "epochs: a study's budgets only grow")
    total_seeds = _add_seeds(configs, held, seeds, grid)
    chain = tuple(sorted(budgets))
    _check_checkpoints(held, chain, checkpoints)
    return ExtendPlan(chain, len(configs), total_seeds, _next_step(held, configs, chain))


def _add_seeds(configs: dict[str, dict[str, Any]], held: dict[str, dict[int, dict[str, Any]]],
               seeds: int | None, grid: Callable[[int], list[dict[str, Any]]] | None
               ) -> int | None:
    """Add the grid's configurations at ``seeds`` seeds to ``configs``; the grid's seeds after
    the extension (None for an open search, whose trials have no seed axis)."""
    if grid is None:
        if seeds is not None:
            raise UsageError(
                "--seeds adds seeds to a grid, and this study's search is open (Optuna chooses "
                "its trials): extend it with --max-epochs only")
        return None
    have = 1 + max(int(c["seed"]) for c in configs.values())
    if seeds is None:
        return have
    if seeds < have:
        raise UsageError(f"--seeds {seeds} is fewer than the study's {have} seeds: a study's "
                         "seeds only grow")
    planned = {config_key(c): complete_config(c) for c in grid(seeds)}
    foreign = sorted(set(configs) - set(planned))
    if foreign:
        example = next(iter(held.get(foreign[0], {}).values()), {"trial_key": foreign[0]})
        raise UsageError(
            f"the study's grid at {seeds} seeds has no configuration of trial "
            f"{example['trial_key']}: the grid is not this study's (extend a study with its "
            "own study.json)")
    for ckey, config in planned.items():
        configs.setdefault(ckey, config)
    return seeds


def _next_step(held: dict[str, dict[int, dict[str, Any]]],
               configs: dict[str, dict[str, Any]], chain: tuple[int, ...]) -> Step | None:
    """The trials of the smallest budget some configuration lacks (None: none lacks one)."""
    for index, budget in enumerate(chain):
        missing = sorted(c for c in configs if budget not in held.get(c, {}))
        if not missing:
            continue
        trials = []
        for ckey in missing:
            config = {**configs[ckey], "max_epochs": budget}
            key = trial_key(config)
            source = held.get(ckey, {}).get(chain[index - 1]) if index else None
            if source is None:
                trials.append(Planned(FRESH, key, config))
            elif ran_to_budget(source):
                trials.append(Planned(CONTINUE, key, config, source["trial_key"]))
            else:
                trials.append(Planned(CARRY, key, config, source["trial_key"],
                                      ended_why(source)))
        return Step(budget, tuple(trials))
    return None


def _check_checkpoints(held: dict[str, dict[int, dict[str, Any]]], chain: tuple[int, ...],
                       checkpoints: Collection[str]) -> None:
    """Every trial the extension will continue from — at any step, so that nothing is written
    before a later step finds it impossible — must still have its last checkpoint."""
    gone = []
    for budgets in held.values():
        for before, after in zip(chain, chain[1:], strict=False):
            source = budgets.get(before)
            if after not in budgets and source is not None and ran_to_budget(source) \
                    and source["trial_key"] not in checkpoints:
                gone.append((source["trial_key"], before, after))
    if gone:
        key, before, after = sorted(gone)[0]
        more = f" ({len(gone)} trials in all)" if len(gone) > 1 else ""
        raise UsageError(
            f"trial {key} has no checkpoint left ({store.TRIALS_DIR}/{key}/{CHECKPOINT}): it "
            f"ran to its {before} epochs and cannot continue to {after}{more}")


def ran_to_budget(record: dict[str, Any]) -> bool:
    """The trial completed all its ``max_epochs`` without stopping early: it can continue."""
    return (record.get("state") == store.COMPLETED and not record.get("stopped_early")
            and record.get("epochs_run") is not None
            and int(record["epochs_run"]) >= int(record["max_epochs"]))


def ended_why(record: dict[str, Any]) -> str:
    """Why a trial that did not run to its budget keeps its result at a larger one."""
    epoch, budget = record.get("epochs_run"), record.get("max_epochs")
    state = record.get("state")
    if state == store.PRUNED:
        return f"pruned by the scheduler at epoch {epoch} of {budget}"
    if state == store.ERROR:
        error = store.one_line(record.get("error") or "unknown error")[:120]
        return f"errored at epoch {epoch} of {budget} ({error})"
    if record.get("stopped_early"):
        return (f"stopped early at epoch {epoch} of {budget} (best epoch "
                f"{record.get('best_epoch')}, patience {record.get('patience')}): more epochs "
                "change nothing")
    return f"ended at epoch {epoch} of {budget}"


def checkpoints_left(folder: store.StudyFolder, keys: Collection[str]) -> set[str]:
    """The trial keys among ``keys`` whose folder still holds its last checkpoint."""
    return {k for k in keys
            if store.exists(folder.fs, store.join(folder.root, store.TRIALS_DIR, k, CHECKPOINT))}


def start_from_source(folder: store.StudyFolder, source: str, checkpoint_dir: Path) -> bool:
    """Put trial ``source``'s last checkpoint where a continued trial resumes from
    (``checkpoint_dir``: its local ``checkpoint/`` folder), unless the trial has its own there
    (an earlier attempt's: its progress wins). True when copied. The source is only read; on an
    object store it is downloaded. `models.trial.run_trial` then continues it to the trial's
    larger ``max_epochs``."""
    target = Path(checkpoint_dir) / Path(CHECKPOINT).name
    if target.is_file():
        return False
    data = store.read_bytes(folder.fs, store.join(folder.root, store.TRIALS_DIR, source,
                                                  CHECKPOINT))
    store.write_bytes(pafs.LocalFileSystem(), str(target), data)
    return True


def plan_rows_of(step: Step) -> list[dict[str, Any]]:
    """The step's trials as plan.parquet rows (their flat config and ``trial_key``), for the
    caller to add to the study's plan before it runs them."""
    return [{**t.config, KEY_FIELD: t.trial_key} for t in step.trials]
