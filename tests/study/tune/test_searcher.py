"""The searcher over Optuna's ask-and-tell, driven as Ray Tune drives it (no Ray running):
every planned key exactly once, also after a lost driver; the hyperparameters visible."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import optuna
import pytest
from ray.tune.search import Searcher

from study import optuna_study
from study.spec import load_spec
from study.tune.searcher import StudySearcher
from study.tune.trainable import STATE_KEY


def grid_spec(tmp_path: Path, name: str = "grid"):
    return load_spec("quickstart", {"study.storage": str(tmp_path / name),
                                    "search.seeds": 2})


def open_spec(tmp_path: Path, n: int = 5):
    return load_spec("open_search", {"study.storage": str(tmp_path / "open"),
                                     "search.num_samples": n, "search.sampler_seed": 0})


def searcher(spec) -> StudySearcher:
    return StudySearcher({"spec": spec.to_dict(), "budget": spec.search.num_samples})


def complete(s: StudySearcher, tid: str, value: float = 1.0) -> None:
    s.on_trial_result(tid, {"epoch": 1, "val_loss": value + 1})
    s.on_trial_complete(tid, {STATE_KEY: "COMPLETED", "val_loss": value})


def drain(s: StudySearcher, prefix: str) -> list[str]:
    """Suggest and complete until FINISHED; the keys run."""
    keys = []
    for i in range(1000):
        config = s.suggest(f"{prefix}{i}")
        if config == Searcher.FINISHED:
            return keys
        keys.append(config["trial_key"])
        complete(s, f"{prefix}{i}", float(i))
    raise AssertionError("the searcher never finished")


def test_grid_runs_every_planned_key_once(tmp_path):
    spec = grid_spec(tmp_path)
    planned = [t["trial_key"] for t in spec.plan()]
    s = searcher(spec)
    keys = drain(s, "t")
    assert sorted(keys) == sorted(planned) and len(planned) == 14
    study = optuna_study.open_study(spec)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 14
    # the config a trial gets is the planned one, key included
    again = searcher(spec)
    assert again.suggest("x") == Searcher.FINISHED


def test_grid_trials_carry_their_hyperparameters(tmp_path):
    """What optuna-dashboard plots (params) and lists (user attributes), via the public
    `trials_dataframe`: M, K, π and the prior vary (params); arch, dataset, lr are fixed."""
    spec = grid_spec(tmp_path)
    drain(searcher(spec), "t")
    frame = optuna_study.open_study(spec).trials_dataframe()
    for column in ("params_M", "params_K", "params_prior", "params_pi[0]", "params_pi[1]",
                   "params_seed", "user_attrs_arch", "user_attrs_dataset", "user_attrs_lr",
                   "user_attrs_kl_estimator", "user_attrs_trial_key"):
        assert column in frame.columns, column
    plan = {t["trial_key"]: t for t in spec.plan()}
    for row in frame.to_dict("records"):
        config = plan[row["user_attrs_trial_key"]]
        assert row["params_M"] == config["M"] and row["params_K"] == config["K"]
        assert row["params_pi[0]"] == pytest.approx(config["pi"][0])
        assert row["user_attrs_arch"] == config["arch"] == "mlp"
    # the parameters' distributions are Optuna's own, so its importance analysis reads them
    study = optuna_study.open_study(spec)
    assert set(optuna.importance.get_param_importances(study)) >= {"M", "K"}


@pytest.mark.parametrize("asked_before_crash", [1, 3])
def test_grid_after_a_lost_driver_adopts_asked_trials(tmp_path, asked_before_crash):
    """A driver asks trials and dies before Tune saves anything: a new searcher adopts the
    RUNNING ones (same Optuna trial), runs the rest, and no key runs twice."""
    spec = grid_spec(tmp_path)
    first = searcher(spec)
    done = []
    for i in range(5):
        done.append(first.suggest(f"a{i}")["trial_key"])
        complete(first, f"a{i}")
    lost = [first.suggest(f"a{5 + i}")["trial_key"] for i in range(asked_before_crash)]
    del first  # the driver dies: nothing saved
    second = searcher(spec)
    adopted = [second.suggest(f"b{i}")["trial_key"] for i in range(asked_before_crash)]
    assert sorted(adopted) == sorted(lost)
    for i in range(asked_before_crash):
        complete(second, f"b{i}")
    rest = drain(second, "c")
    assert sorted(done + adopted + rest) == sorted(t["trial_key"] for t in spec.plan())
    study = optuna_study.open_study(spec)
    assert len(study.trials) == 14
    assert {t.state.name for t in study.trials} == {"COMPLETE"}


def test_save_restore_keeps_owned_trials_and_adopts_the_others(tmp_path):
    """Tune restores its trials (still RUNNING in Optuna) with the searcher's checkpoint: those
    stay theirs; a trial asked after the checkpoint is adopted by a new Tune trial."""
    spec = grid_spec(tmp_path)
    s = searcher(spec)
    owned = s.suggest("t0")["trial_key"]
    s.save(str(tmp_path / "ckpt.json"))
    late = s.suggest("t1")["trial_key"]
    restored = pickle.loads(pickle.dumps(s))  # Tune's tuner.pkl: the recipe only
    restored.restore(str(tmp_path / "ckpt.json"))
    assert restored.suggest("t2")["trial_key"] == late  # adopted
    complete(restored, "t0")  # Tune's restored trial ends
    complete(restored, "t2")
    rest = drain(restored, "r")
    assert owned not in rest and late not in rest and len(rest) == 12
    numbers = json.loads((tmp_path / "ckpt.json").read_text())["numbers"]
    assert list(numbers) == ["t0"]


def test_errors_and_pruning_are_told(tmp_path):
    spec = grid_spec(tmp_path)
    s = searcher(spec)
    s.suggest("e")
    s.on_trial_complete("e", {STATE_KEY: "ERROR", "val_loss": float("nan")})
    s.suggest("p")
    s.on_trial_complete("p", {"val_loss": 3.0})  # stopped by the scheduler
    s.suggest("x")
    s.on_trial_complete("x", None, error=True)  # lost after its retries
    s.on_trial_complete("x", None, error=True)  # told twice: ignored
    states = [t.state.name for t in optuna_study.open_study(spec).trials[:3]]
    assert states == ["FAIL", "PRUNED", "FAIL"]
    assert optuna_study.counts(spec) == {"FAIL": 2, "PRUNED": 1, "WAITING": 11}


def test_open_search_budget_distinct_keys_and_hyperparameters(tmp_path):
    spec = open_spec(tmp_path, n=5)
    s = searcher(spec)
    keys = drain(s, "t")
    assert len(keys) == len(set(keys)) == 5
    study = optuna_study.open_study(spec)
    counted = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(counted) == 5
    for t in counted:
        # searched fields are params; the fixed ones user attributes; π as components
        assert "M" in t.params and "dataset" in t.user_attrs and "trial_key" in t.user_attrs
        assert sum(v for k, v in {**t.params, **t.user_attrs}.items()
                   if k.startswith("pi[")) == pytest.approx(1.0)


def test_open_search_adopts_an_orphan_with_its_own_config(tmp_path):
    spec = open_spec(tmp_path, n=3)
    first = searcher(spec)
    config = first.suggest("a0")
    del first
    second = searcher(spec)
    assert second.suggest("b0") == config
    keys = [config["trial_key"]]
    complete(second, "b0")
    keys += drain(second, "c")
    assert len(keys) == len(set(keys)) == 3


def test_an_orphan_asked_but_never_assigned_is_failed_and_not_counted(tmp_path):
    spec = open_spec(tmp_path, n=2)
    study = optuna_study.open_study(spec)
    study.ask()  # a driver died between ask() and choosing the configuration
    s = searcher(spec)
    keys = drain(s, "t")
    assert len(keys) == 2
    assert optuna_study.open_study(spec).trials[0].state.name == "FAIL"
