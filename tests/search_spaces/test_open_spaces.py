"""Define-by-run spaces: every sampled configuration is a valid trial, π on the simplex."""

from __future__ import annotations

import math
import random

import optuna
import pytest

import search_spaces
from models.config import PI_TOLERANCE, TrialConfig
from search_spaces.simplex import (
    FIGURE4_PIS,
    PI_FLOOR,
    decode_pi,
    encode_pi,
    floor_simplex,
    stick_breaking,
)

OPEN = [n for n in search_spaces.names() if search_spaces.get(n).kind == "open"]
FIXED = {"dataset": "digits", "max_epochs": 50}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(previous)


def _check_pi(config: dict) -> None:
    pi = config["pi"]
    assert len(pi) == config["M"]
    assert abs(math.fsum(pi) - 1.0) <= PI_TOLERANCE
    assert all(p > 0 for p in pi)


@pytest.mark.parametrize("sampler_name", ["random", "tpe"])
@pytest.mark.parametrize("space_name", OPEN)
def test_sampled_configs_are_valid_trials(space_name, sampler_name):
    space = search_spaces.get(space_name)
    sampler = (optuna.samplers.RandomSampler(seed=1) if sampler_name == "random"
               else optuna.samplers.TPESampler(seed=1, n_startup_trials=20))
    seen_m: set[int] = set()

    def objective(trial: optuna.Trial) -> float:
        config = space.suggest(trial, FIXED)
        TrialConfig.from_flat(config)  # raises on anything invalid
        _check_pi(config)
        if space_name != "mixture_weights":
            assert min(config["pi"]) >= PI_FLOOR - 1e-12
        assert config["seed"] == 0 and config["dataset"] == "digits"
        assert set(trial.params) <= {*space.searched, *(f"pi_{i}" for i in range(4)),
                                     "pi_M2", "pi_M3"}
        seen_m.add(config["M"])
        # a dummy objective that prefers unequal weights, so TPE moves towards the edges
        return -max(config["pi"]) + 0.001 * config["K"]

    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=200 if sampler_name == "random" else 120)
    assert len(study.trials) >= 120
    assert seen_m == ({2, 3} if space_name == "mixture_weights" else {1, 2, 3})


def test_fixed_fields_are_not_searched():
    space = search_spaces.get("open")
    fixed = {**FIXED, "arch": "cnn", "M": 2, "K": 77, "lr": 1e-3, "latent_dim": 20,
             "warmup_epochs": 3, "precision": "bf16"}
    trial = optuna.create_study().ask()
    config = space.suggest(trial, fixed)
    assert set(trial.params) == {"pi_0"}
    assert (config["arch"], config["M"], config["K"], config["lr"]) == ("cnn", 2, 77, 1e-3)
    trial = optuna.create_study().ask()
    config = space.suggest(trial, {**fixed, "pi": [0.25, 0.75]})
    assert trial.params == {} and config["pi"] == [0.25, 0.75] and config["M"] == 2


def test_precision_is_not_searched():
    space = search_spaces.get("open")
    assert "precision" not in space.searched
    for _ in range(5):
        trial = optuna.create_study().ask()
        config = space.suggest(trial, dict(FIXED))
        assert "precision" not in trial.params and config["precision"] == "fp32"  # default
    trial = optuna.create_study().ask()
    assert space.suggest(trial, {**FIXED, "precision": "bf16"})["precision"] == "bf16"


def test_standard_prior_searches_no_k():
    trial = optuna.create_study().ask()
    config = search_spaces.get("quickstart_open").suggest(trial, {**FIXED, "prior": "standard"})
    assert "K" not in trial.params and config["prior"] == "standard"


def test_mixture_weights_choices_are_the_papers_lists():
    trial = optuna.create_study().ask()
    config = search_spaces.get("mixture_weights").suggest(trial, {**FIXED, "M": 3})
    assert encode_pi(config["pi"]) in {encode_pi(decode_pi(c)) for c in FIGURE4_PIS[3]}
    with pytest.raises(ValueError, match="pi"):
        search_spaces.get("mixture_weights").suggest(
            optuna.create_study().ask(), {**FIXED, "pi": [0.5, 0.5]})


def test_stick_breaking_is_uniform_on_the_simplex():
    rng = random.Random(0)
    for m in (2, 3, 5):
        draws = [stick_breaking([rng.random() for _ in range(m - 1)]) for _ in range(4000)]
        for i in range(m):  # Dirichlet(1,...,1): every mean is 1/M
            assert abs(sum(d[i] for d in draws) / len(draws) - 1 / m) < 0.02
        assert all(abs(math.fsum(d) - 1) < 1e-12 for d in draws)


@pytest.mark.parametrize("pi", [[1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5], [1e-9, 1 - 1e-9]])
def test_floor_keeps_the_simplex(pi):
    lifted = floor_simplex(pi)
    assert min(lifted) >= PI_FLOOR - 1e-12
    assert abs(math.fsum(lifted) - 1.0) < 1e-12
    assert stick_breaking([1.0, 1.0]) == [1.0, 0.0, 0.0]


def test_pi_strings_round_trip_and_one_third_is_exact_enough():
    thirds = decode_pi("1/3,1/3,1/3")
    assert abs(math.fsum(thirds) - 1.0) <= 1e-15
    assert decode_pi(encode_pi([0.1, 0.9])) == [0.1, 0.9]


@pytest.mark.parametrize("estimator", ["lse", "mc"])
def test_open_spaces_carry_a_fixed_kl_estimator(estimator):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    config = search_spaces.get("open").suggest(trial, {"dataset": "mnist",
                                                       "kl_estimator": estimator})
    assert config["kl_estimator"] == estimator
    assert TrialConfig.from_flat(config).model.kl_estimator == estimator
