"""`study.trial_choice.TrialChoice` on its own: no Optuna, no Ray, no server — orphans first,
then the keys to run again (once each), then a grid's waiting trials or an open space's draws."""

from __future__ import annotations

from study.trial_choice import ADOPT, ASK, DRAW, FINISHED, RERUN, Next, TrialChoice

PLAN = [{"trial_key": k, "M": m} for k, m in (("a", 1), ("b", 2), ("c", 3))]


def drain(choice: TrialChoice) -> list[Next]:
    out = []
    for _ in range(20):
        out.append(choice.next())
        if out[-1].kind in (FINISHED, DRAW):
            break
    return out


def test_a_grid_asks_as_many_trials_as_wait_then_finishes():
    choice = TrialChoice(PLAN)
    choice.saw([], waiting=2)
    assert [n.kind for n in drain(choice)] == [ASK, ASK, FINISHED]
    assert choice.next().kind == FINISHED  # and stays finished


def test_orphans_come_first_then_reruns_once_then_the_waiting():
    choice = TrialChoice(PLAN, reruns={"c": dict(PLAN[2]), "b": None, "a": dict(PLAN[0])})
    choice.saw([(7, dict(PLAN[1]))], waiting=1)
    got = drain(choice)
    assert [(n.kind, n.number) for n in got] == [(ADOPT, 7), (RERUN, None), (RERUN, None),
                                                 (ASK, None), (FINISHED, None)]
    assert [n.config["trial_key"] for n in got[:3]] == ["b", "a", "c"]  # "b": not known
    assert choice.served == {"a", "b", "c"}  # (b skipped: no configuration known)


def test_a_configuration_handed_out_is_a_copy():
    choice = TrialChoice(PLAN, reruns={"a": PLAN[0]})
    choice.next().config["M"] = 99
    assert PLAN[0]["M"] == 1 and choice.planned("a") == PLAN[0]
    assert choice.planned("z") is None and TrialChoice(None).planned("a") is None


def test_a_restored_experiment_keeps_its_trials_and_its_served_reruns():
    choice = TrialChoice(PLAN, reruns={"a": dict(PLAN[0])})
    choice.saw([(3, dict(PLAN[1])), (4, dict(PLAN[2]))], waiting=0)
    choice.owned([3])  # Tune restored the trial that owns Optuna trial 3
    choice.served = {"a"}  # saved with Tune's state
    assert [(n.kind, n.number) for n in drain(choice)] == [(ADOPT, 4), (FINISHED, None)]


def test_an_open_space_draws_after_its_orphans_and_reruns():
    drawn = {"trial_key": "x", "lr": 0.1}
    choice = TrialChoice(None, reruns={"x": drawn})
    choice.saw([(1, {"trial_key": "y"})], waiting=5)  # (an open space has nothing waiting)
    assert [n.kind for n in drain(choice)] == [ADOPT, RERUN, DRAW]
    assert choice.next().kind == DRAW
