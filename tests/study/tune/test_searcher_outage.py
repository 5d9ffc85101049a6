"""The searcher through an Optuna database that goes away (issue 17), no server needed: an
in-memory Optuna storage behind `flaky_storage.Flaky`, failing the calls each test picks."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from flaky_storage import WRITES, Flaky  # noqa: E402
from ray.tune.search import Searcher

from study import optuna_study
from study.errors import Unreachable
from study.process_state import Driving, driving
from study.spec import load_spec
from study.tune.searcher import StudySearcher
from study.tune.trainable import STATE_KEY


@pytest.fixture
def flaky(monkeypatch) -> Flaky:
    made: dict[str, Flaky] = {}

    def storage(spec):
        if "storage" not in made:
            made["storage"] = Flaky(optuna.storages.InMemoryStorage())
        return made["storage"]

    monkeypatch.setattr(optuna_study, "open_storage", storage)
    with driving(Driving()) as experiment:  # (as `study.tune.engine.run` sets it)
        made["ending"] = experiment.ending
        yield made


def grid_spec(tmp_path: Path, grace: float = 60.0):
    return load_spec("quickstart", {"study.storage": str(tmp_path / "grid"),
                                    "study.optuna_storage": "postgresql+psycopg://u:secret@"
                                                            "127.0.0.1:9/db",
                                    "search.seeds": 2, "failure.outage_grace": grace})


def new_searcher(spec) -> StudySearcher:
    return StudySearcher({"spec": spec.to_dict(), "budget": spec.search.num_samples})


def complete(s: StudySearcher, tid: str, value: float) -> None:
    s.on_trial_result(tid, {"epoch": 1, "val_loss": value + 1})
    s.on_trial_complete(tid, {STATE_KEY: "COMPLETED", "val_loss": value})


def run_all(s: StudySearcher, prefix: str, value=lambda i: 1.0) -> list[str]:
    """Suggest and complete trials as Tune would until the searcher is FINISHED: their keys."""
    keys = []
    for i in range(100):
        config = s.suggest(f"{prefix}{i}")
        if config == Searcher.FINISHED:
            break
        keys.append(config["trial_key"])
        complete(s, f"{prefix}{i}", value(i))
    return keys


def check_each_key_once(spec, storage: Flaky) -> None:
    storage.fail = lambda name, n: None
    trials = optuna_study.open_study(spec).get_trials(deepcopy=False)
    keys = sorted(t.user_attrs["trial_key"] for t in trials)
    assert keys == sorted(t["trial_key"] for t in spec.plan())  # no extra trial either
    assert {t.state.name for t in trials} == {"COMPLETE"}


def test_calls_cut_before_or_after_their_commit_are_retried_without_a_lost_or_double_key(
        tmp_path, flaky):
    """Every 9th write of the searcher fails, alternately before it reached the database and
    after (a lost ask, tell, report, parameter): the grid still ends with each key once
    COMPLETE, no extra trial, and the searcher FINISHED."""
    spec = grid_spec(tmp_path)
    s = new_searcher(spec)
    storage = flaky["storage"]
    writes = {"n": 0}

    def fail(name: str, n: int) -> str | None:
        if name not in WRITES:
            return None
        writes["n"] += 1
        if writes["n"] % 9:
            return None
        return "after" if writes["n"] % 18 else "before"

    storage.fail = fail
    keys = run_all(s, "t", float)
    assert storage.failures >= 8 and flaky["ending"].database is None
    assert sorted(keys) == sorted(t["trial_key"] for t in spec.plan())
    check_each_key_once(spec, storage)


def test_a_lost_ask_is_adopted_by_the_retry(tmp_path, flaky):
    """The ask's commit (WAITING → RUNNING) landed but its answer was lost: the retry takes
    that very trial instead of asking another."""
    spec = grid_spec(tmp_path)
    s = new_searcher(spec)
    storage = flaky["storage"]
    first = s.suggest("t0")["trial_key"]
    n = storage.calls.get("set_trial_state_values", 0)
    storage.fail = lambda name, k: "after" if name == "set_trial_state_values" and \
        k == n + 1 else None
    second = s.suggest("t1")["trial_key"]
    storage.fail = lambda name, k: None
    assert storage.failures == 1 and second != first
    trials = optuna_study.open_study(spec).get_trials(deepcopy=False)
    running = [t for t in trials if t.state.name == "RUNNING"]
    assert sorted(t.user_attrs["trial_key"] for t in running) == sorted([first, second])
    assert s.suggest("t2")["trial_key"] not in (first, second)


def test_a_failed_tell_is_told_again(tmp_path, flaky):
    """A tell that raised (a non-transient error, passed on to Tune) is not marked told: the
    next end of the same trial tells it."""
    spec = grid_spec(tmp_path)
    s = new_searcher(spec)
    storage = flaky["storage"]
    s.suggest("t0")

    def boom(name: str, n: int) -> str | None:
        if name == "set_trial_state_values":
            raise RuntimeError("a bug")
        return None

    storage.fail = boom
    with pytest.raises(RuntimeError):
        s.on_trial_complete("t0", {STATE_KEY: "COMPLETED", "val_loss": 1.0})
    storage.fail = lambda name, n: None
    s.on_trial_complete("t0", {STATE_KEY: "COMPLETED", "val_loss": 1.0})
    trial = optuna_study.open_study(spec).trials[0]
    assert trial.state.name == "COMPLETE" and trial.value == 1.0


def test_past_the_grace_the_searcher_gives_up_in_one_line(tmp_path, flaky):
    """The database stays away past ``outage_grace``: ``suggest`` returns None and hands Tune's
    stopper the `Unreachable` (database named, password hidden, how to continue); the trial
    in flight is left RUNNING for the resumed study, and a healthy searcher finishes it."""
    spec = grid_spec(tmp_path, grace=1.5)
    s = new_searcher(spec)
    storage = flaky["storage"]
    s.suggest("t0")
    storage.fail = lambda name, n: "before"
    assert s.suggest("t1") is None
    error = flaky["ending"].database
    assert isinstance(error, Unreachable)
    assert re.fullmatch(r"the Optuna database postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:9/db "
                        r"did not answer for [12] s \(last error: server closed the connection "
                        rf"unexpectedly\); `gmmpvae resume {re.escape(spec.storage)}` "
                        r"continues it", str(error)), str(error)
    assert "secret" not in str(error)
    storage.fail = lambda name, n: pytest.fail(f"{name} called while stopping")
    s.on_trial_complete("t0", {STATE_KEY: "COMPLETED", "val_loss": 1.0})  # the stop: not told
    s.on_trial_result("t0", {"epoch": 2, "val_loss": 1.0})
    storage.fail = lambda name, n: None
    with driving(Driving()):  # the resumed driver's experiment: adopts t0's trial, runs the rest
        again = new_searcher(spec)
        keys = run_all(again, "r")
    assert sorted(keys) == sorted(t["trial_key"] for t in spec.plan())
    check_each_key_once(spec, storage)


def test_a_grid_suggest_reads_no_trials_itself(tmp_path, flaky):
    """Issue 17 B: with many trials waiting and some in flight, a grid's ``suggest`` adds no
    read of the study's trials to Optuna's own ``ask`` (one read of the waiting ones): orphans
    were found when the searcher started, and what waits is counted."""
    spec = grid_spec(tmp_path)
    s = new_searcher(spec)
    storage = flaky["storage"]
    for i in range(4):
        s.suggest(f"t{i}")
    reads = []
    storage.fail = lambda name, n: reads.append(name) if name == "get_all_trials" else None
    for i in range(4, 8):
        before = len(reads)
        s.suggest(f"t{i}")
        assert len(reads) - before <= 1, reads
    assert reads  # Optuna's ask reads the waiting trials (if this fails: Optuna changed)
