"""ModelConfig / TrainConfig / TrialConfig: validation at the edge and dict round trips."""

from __future__ import annotations

import json
import math

import pytest

from models.config import ModelConfig, TrainConfig, TrialConfig


def test_defaults_are_uniform_and_valid():
    cfg = ModelConfig(M=3)
    assert cfg.pi == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert math.fsum(cfg.pi) == pytest.approx(1.0, abs=1e-12)
    assert cfg.n_pixels == 784


@pytest.mark.parametrize(
    ("changes", "field", "accepted"),
    [
        ({"M": 0}, "M", "integer >= 1"),
        ({"M": 2.5}, "M", "integer >= 1"),
        ({"M": True}, "M", "integer >= 1"),
        ({"K": 0}, "K", "integer >= 1"),
        ({"latent_dim": -3}, "latent_dim", "integer >= 1"),
        ({"arch": "resnet"}, "arch", "mlp, cnn, pixel"),
        ({"prior": "vamp"}, "prior", "standard, pseudo_mixture"),
        ({"likelihood": "gaussian"}, "likelihood", "bernoulli, logistic"),
        ({"kl_estimator": "exact"}, "kl_estimator", "greedy, optimal, mc, lse"),
        ({"pseudo_init": "zeros"}, "pseudo_init", "normal, data"),
        ({"M": 2, "pi": [0.5, 0.4]}, "pi", "sum to 1"),
        ({"M": 2, "pi": [0.5]}, "pi", "M=2"),
        ({"M": 2, "pi": [1.0, 0.0]}, "pi", "> 0"),
        ({"M": 2, "pi": [1.2, -0.2]}, "pi", "> 0"),
        ({"M": 2, "pi": ["a", "b"]}, "pi", "> 0"),
        ({"image_shape": (28,)}, "image_shape", "two integers"),
        ({"image_shape": (2, 2)}, "image_shape", ">= 4"),
    ],
)
def test_bad_model_config_names_field_value_and_accepted(changes, field, accepted):
    with pytest.raises(ValueError) as info:
        ModelConfig(**changes)
    message = str(info.value)
    assert message.startswith(f"{field}={changes[field]!r} is invalid")
    assert accepted in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dataset": "cifar"}, "dataset"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"patience": 0}, "patience"),
        ({"is_samples": 0}, "is_samples"),
        ({"device": "tpu"}, "device"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_train_config(changes, field):
    with pytest.raises(ValueError, match=rf"^{field}="):
        TrainConfig(**changes)


def test_pi_tolerance_is_1e_6():
    ModelConfig(M=3, pi=(1 / 3, 1 / 3, 1 / 3 + 5e-7))
    with pytest.raises(ValueError, match="pi="):
        ModelConfig(M=3, pi=(1 / 3, 1 / 3, 1 / 3 + 5e-6))


def test_round_trip_through_json_dicts():
    cfg = TrialConfig(
        model=ModelConfig(arch="cnn", M=2, pi=(0.3, 0.7), K=100, image_shape=(28, 20)),
        train=TrainConfig(dataset="frey", max_epochs=7, seed=3),
    )
    flat = json.loads(json.dumps(cfg.to_flat()))
    assert flat["pi"] == [0.3, 0.7]
    assert TrialConfig.from_flat(flat) == cfg
    assert ModelConfig.from_dict(cfg.model.to_dict()) == cfg.model


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({"M": 1, "n_components": 2})
    with pytest.raises(ValueError, match="unknown trial field"):
        TrialConfig.from_flat({"M": 1, "epochs": 2})


def test_configs_are_frozen():
    cfg = ModelConfig()
    with pytest.raises(AttributeError):
        cfg.M = 2  # type: ignore[misc]


def test_warmup_beta():
    cfg = TrainConfig(warmup_epochs=4)
    assert [cfg.beta(e) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert TrainConfig(warmup_epochs=0).beta(1) == 1.0
