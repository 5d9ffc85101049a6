"""study.extend_plan: which trials continue, which keep their result and why, which seeds are
new, budget step by budget step; what is refused in one line. Pure: records in, plan out (no
Ray, no files but for `checkpoints_left`)."""

from __future__ import annotations

import pytest

from search_spaces import complete_config, config_key, trial_key
from study import store
from study.errors import UsageError
from study.extend_plan import (
    CARRY,
    CHECKPOINT,
    CONTINUE,
    FRESH,
    checkpoints_left,
    plan_extend,
    plan_rows_of,
    start_from_source,
)

BUDGET = 10


def config(M: int, seed: int, max_epochs: int = BUDGET) -> dict:
    return complete_config({"dataset": "digits", "M": M, "K": 10, "seed": seed,
                            "max_epochs": max_epochs, "patience": 3})


def grid(seeds: int) -> list[dict]:
    """The study's grid: M in {2, 3} × seeds, at the study's own budget."""
    return [config(M, s) for M in (2, 3) for s in range(seeds)]


def record(cfg: dict, state: str = store.COMPLETED, epochs_run: int | None = None,
           stopped_early: bool = False, error: str | None = None) -> dict:
    epochs_run = cfg["max_epochs"] if epochs_run is None else epochs_run
    metrics = {"epochs_run": epochs_run, "stopped_early": stopped_early, "best_epoch": 2,
               "test_ll": -90.0 if state == store.COMPLETED else None}
    return store.make_record(study="s", trial_key=trial_key(cfg), state=state, config=cfg,
                             metrics=metrics, error=error)


@pytest.fixture
def study() -> dict[str, dict]:
    """A finished 10-epoch grid of 2 seeds: one trial of each ending."""
    return {
        "full": record(config(2, 0)),
        "stopped": record(config(2, 1), epochs_run=6, stopped_early=True),
        "pruned": record(config(3, 0), state=store.PRUNED, epochs_run=2),
        "errored": record(config(3, 1), state=store.ERROR, epochs_run=4,
                          error="non-finite loss (nan) at epoch 4, batch 3"),
    }


def plan_row(cfg: dict) -> dict:
    """A plan.parquet row of ``cfg`` (its key and config columns)."""
    return store.make_record(study="s", trial_key=trial_key(cfg), state=store.COMPLETED,
                             config=cfg)


def plan_of(records, **request):
    """Plan with the records' own plan rows (every trial planned has a result)."""
    records = list(records)
    request.setdefault("grid", grid)
    request.setdefault("checkpoints", {r["trial_key"] for r in records})
    return plan_extend(records, records, **request)


def run_step(records: list[dict], step, checkpoints: set[str]) -> list[dict]:
    """The records after the step ran: continued and fresh trials to their budget, carried
    ones repeated (`store.carried_record`)."""
    by_key = {r["trial_key"]: r for r in records}
    out = list(records)
    for t in step.trials:
        if t.how == CARRY:
            out.append(store.carried_record(by_key[t.source], t.config, t.trial_key, "d"))
        else:
            out.append(record(t.config) | {"continued_from": t.source})
            checkpoints.add(t.trial_key)
    return out


def test_more_epochs_continue_the_full_runs_and_carry_the_others(study):
    plan = plan_of(study.values(), max_epochs=20)
    assert plan.budgets == (10, 20) and plan.configurations == 4 and plan.seeds == 2
    step = plan.step
    assert step.max_epochs == 20 and len(step.trials) == 4
    (cont,) = step.of(CONTINUE)
    assert cont.source == study["full"]["trial_key"]
    assert cont.trial_key == trial_key(config(2, 0, 20)) and cont.config["max_epochs"] == 20
    assert config_key(cont.config) == config_key(config(2, 0))
    assert not step.of(FRESH)
    reasons = {t.source: t.reason for t in step.of(CARRY)}
    assert reasons == {
        study["stopped"]["trial_key"]: "stopped early at epoch 6 of 10 (best epoch 2, "
                                       "patience 3): more epochs change nothing",
        study["pruned"]["trial_key"]: "pruned by the scheduler at epoch 2 of 10",
        study["errored"]["trial_key"]: "errored at epoch 4 of 10 (non-finite loss (nan) at "
                                       "epoch 4, batch 3)",
    }
    lines = plan.lines()
    assert lines[0] == "budgets 10 -> 20 epochs, 4 configurations each (2 seeds)"
    assert lines[1] == ("next: max_epochs=20: 1 continue from their last checkpoint, 3 keep "
                        "their result, 0 new from scratch")
    assert sum(line.startswith("  keep ") for line in lines) == 3
    assert [r["trial_key"] for r in plan_rows_of(step)] == [t.trial_key for t in step.trials]


def test_planning_again_after_a_step_or_a_crash_plans_only_what_is_missing(study):
    records, checkpoints = list(study.values()), {r["trial_key"] for r in study.values()}
    step = plan_of(records, max_epochs=20).step
    half = run_step(records, type(step)(step.max_epochs, step.trials[:2]), checkpoints)
    again = plan_of(half, max_epochs=20, checkpoints=checkpoints).step  # crashed half-way
    assert again.trials == step.trials[2:]
    done = run_step(half, again, checkpoints)
    final = plan_of(done, max_epochs=20, checkpoints=checkpoints)
    assert final.step is None and final.lines()[-1].startswith("nothing left to run")
    # a carried trial is carried again to a still larger budget, naming the first source
    longer = plan_of(done, max_epochs=40, checkpoints=checkpoints).step
    assert longer.max_epochs == 40 and len(longer.of(CONTINUE)) == 1
    carried_40 = run_step(done, longer, checkpoints)
    sources = {r["carried_from"] for r in carried_40 if r.get("carried_from")
               and r["max_epochs"] == 40}
    assert sources == {study[k]["trial_key"] for k in ("stopped", "pruned", "errored")}


def test_more_seeds_pass_through_every_budget(study):
    records, checkpoints = list(study.values()), {r["trial_key"] for r in study.values()}
    plan = plan_of(records, max_epochs=20, seeds=3, checkpoints=checkpoints)
    assert plan.budgets == (10, 20) and plan.configurations == 6 and plan.seeds == 3
    first = plan.step  # the new seed at the study's first budget, from scratch
    assert first.max_epochs == 10 and [t.how for t in first.trials] == [FRESH, FRESH]
    assert {t.trial_key for t in first.trials} == {trial_key(config(2, 2)),
                                                    trial_key(config(3, 2))}
    records = run_step(records, first, checkpoints)
    second = plan_of(records, max_epochs=20, seeds=3, checkpoints=checkpoints).step
    assert second.max_epochs == 20 and len(second.of(CONTINUE)) == 3  # two new seeds, one old
    assert len(second.of(CARRY)) == 3
    # seeds alone: the study's budgets only
    only_seeds = plan_of(list(study.values()), seeds=3)
    assert only_seeds.budgets == (10,) and only_seeds.step.max_epochs == 10
    assert plan_of(list(study.values()), seeds=2).step is None  # as many as it has


@pytest.mark.parametrize("request_, match", [
    ({}, "nothing to extend"),
    ({"max_epochs": 0}, r"--max-epochs 0 is invalid"),
    ({"seeds": True}, r"--seeds True is invalid"),
    ({"max_epochs": 5}, "smaller than the study's largest budget, 10 epochs"),
    ({"seeds": 1}, "fewer than the study's 2 seeds"),
    ({"seeds": 3, "grid": None}, "this study's search is open"),
    ({"seeds": 3, "grid": lambda n: grid(n)[1:]}, "the grid is not this study's"),
])
def test_what_cannot_be_done_is_refused_in_one_line(study, request_, match):
    with pytest.raises(UsageError, match=match) as refused:
        plan_of(study.values(), **request_)
    assert "\n" not in str(refused.value)


def test_a_study_with_unfinished_or_no_trials_is_refused(study):
    records = list(study.values())
    lost = plan_row(config(2, 2))
    with pytest.raises(UsageError, match=rf"1 planned trials .*first: {lost['trial_key']}.*"
                                         "gmmpvae resume"):
        plan_extend(records, [*records, lost], max_epochs=20, grid=grid)
    with pytest.raises(UsageError, match="no finished trial"):
        plan_extend([], [], max_epochs=20, grid=grid)


def test_resuming_an_extension_plans_its_unfinished_trials_again(study):
    """A crash during the 20-epoch step: its trials are in the plan, two have no result.
    Planned again, they keep their keys and sources (the trainable finds a continued trial's
    own checkpoint first)."""
    records, checkpoints = list(study.values()), {r["trial_key"] for r in study.values()}
    step = plan_of(records, max_epochs=20).step
    done = run_step(records, type(step)(20, step.trials[:2]), checkpoints)
    rows = [*done, *(plan_row(t.config) for t in step.trials[2:])]
    with pytest.raises(UsageError, match="planned trials have no result"):
        plan_extend(done, rows, max_epochs=20, grid=grid, checkpoints=checkpoints)
    again = plan_extend(done, rows, max_epochs=20, grid=grid, checkpoints=checkpoints,
                        resuming=True)
    assert again.budgets == (10, 20) and again.step.trials == step.trials[2:]


def test_a_trial_whose_checkpoint_is_gone_is_named_before_any_step(study):
    full = study["full"]["trial_key"]
    others = {r["trial_key"] for r in study.values()} - {full}
    # the first step (the new seeds at 10 epochs) would not need it; the second would
    with pytest.raises(UsageError) as refused:
        plan_of(study.values(), max_epochs=20, seeds=3, checkpoints=others)
    line = str(refused.value)
    assert line == (f"trial {full} has no checkpoint left (trials/{full}/{CHECKPOINT}): it ran "
                    "to its 10 epochs and cannot continue to 20")
    # a trial that keeps its result needs no checkpoint
    plan_of(study.values(), max_epochs=20, checkpoints={full})


def test_an_open_search_extends_by_epochs(study):
    plan = plan_of(study.values(), max_epochs=20, grid=None)
    assert plan.seeds is None and len(plan.step.trials) == 4
    assert plan.lines()[0] == "budgets 10 -> 20 epochs, 4 configurations each"


def test_checkpoints_left_reads_the_trial_folders(tmp_path):
    from models.checkpoint import CHECKPOINT_FILE
    from models.trial import CHECKPOINT_DIR

    assert CHECKPOINT == f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"
    folder = store.StudyFolder.of(str(tmp_path))
    (tmp_path / store.TRIALS_DIR / "a" / CHECKPOINT_DIR).mkdir(parents=True)
    (tmp_path / store.TRIALS_DIR / "a" / CHECKPOINT).write_bytes(b"x")
    (tmp_path / store.TRIALS_DIR / "b").mkdir()
    assert checkpoints_left(folder, ["a", "b", "c"]) == {"a"}


def test_a_continued_trial_starts_from_its_sources_checkpoint_unless_it_has_its_own(tmp_path):
    folder = store.StudyFolder.of(str(tmp_path / "study"))
    source = tmp_path / "study" / store.TRIALS_DIR / "src" / CHECKPOINT
    source.parent.mkdir(parents=True)
    source.write_bytes(b"epoch 10")
    mine = tmp_path / "trial" / "checkpoint"
    assert start_from_source(folder, "src", mine)
    assert (mine / "checkpoint.pt").read_bytes() == b"epoch 10"
    (mine / "checkpoint.pt").write_bytes(b"epoch 14")  # an attempt of the trial got further
    assert not start_from_source(folder, "src", mine)
    assert (mine / "checkpoint.pt").read_bytes() == b"epoch 14"
    assert source.read_bytes() == b"epoch 10"
