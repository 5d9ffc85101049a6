"""The memory lower bound: the meta-device parameter count is the real model's; the
pseudo-inputs add exactly P parameters each; impossible sizes are refused in one line."""

from __future__ import annotations

import pytest

from models.config import ModelConfig, TrainConfig, TrialConfig
from models.sizing import check_fits, count_parameters, memory_need
from models.vae import GMMpVAE


def _cfg(**model) -> TrialConfig:
    return TrialConfig(model=ModelConfig(**model), train=TrainConfig(batch_size=100))


@pytest.mark.parametrize("model", [
    {"arch": "mlp", "M": 2, "K": 7, "image_shape": (8, 8)},
    {"arch": "cnn", "M": 1, "K": 3, "image_shape": (28, 20), "likelihood": "logistic"},
    {"arch": "pixel", "M": 3, "K": 2, "prior": "pseudo_mixture"},
    {"arch": "mlp", "prior": "standard"},
])
def test_meta_count_equals_the_real_model(model):
    cfg = _cfg(**model)
    real = sum(p.numel() for p in GMMpVAE(cfg.model).parameters())
    assert count_parameters(cfg) == real


def test_each_pseudo_input_adds_its_pixels():
    small, large = _cfg(K=10), _cfg(K=11)
    assert count_parameters(large) - count_parameters(small) == 28 * 28
    need = memory_need(large)
    assert need.state_bytes == 16 * need.parameters
    # activations: (B + K) rows of P inputs and two hidden layers, plus the (B, K, M, M) KLs
    assert need.activation_bytes == 4 * ((100 + 11) * (784 + 600) + 100 * 11)


def test_default_fits_and_impossible_k_is_refused_in_one_line():
    check_fits(_cfg(K=500, M=3), 1 << 30)
    with pytest.raises(ValueError) as err:
        check_fits(_cfg(K=1_000_000_000), 24 << 30, "node n1")
    message = str(err.value)
    assert "\n" not in message
    assert "K=1000000000" in message and "node n1 has 24.0 GiB" in message
    assert "reduce K" in message
    need = memory_need(_cfg(K=1_000_000_000))
    assert need.total_bytes > 12 * 10**12  # 784e9 pseudo-input values × 16 bytes
