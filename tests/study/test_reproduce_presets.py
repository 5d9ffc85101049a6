"""The reproduction presets (issue 8): their grids cross VAE + M × K with the three estimators."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from study.spec import load_spec

PRESETS = {"reproduce_fashion": (2, "fashion_mnist"), "reproduce_frey": (2, "frey"),
           "reproduce_fashion_gpu": (3, "fashion_mnist"), "reproduce_frey_gpu": (3, "frey")}


@pytest.mark.parametrize("name", PRESETS)
def test_reproduction_presets_cross_models_and_estimators(name):
    seeds, dataset = PRESETS[name]
    spec = load_spec(name)
    plan = spec.plan()
    assert len(plan) == 3 * (1 + 3 * 3) * seeds
    assert len({t["trial_key"] for t in plan}) == len(plan)
    assert all(t["dataset"] == dataset and t["arch"] == "mlp" for t in plan)
    mixtures = Counter((t["kl_estimator"], t["M"], t["K"]) for t in plan
                       if t["prior"] == "pseudo_mixture")
    assert mixtures == {c: seeds for c in itertools.product(("greedy", "lse", "mc"), (1, 2, 3),
                                                           (10, 100, 500))}
    gpu = name.endswith("_gpu")
    assert (spec.resources.gpus_per_trial > 0) == gpu
    if not gpu:
        assert spec.resources.cpus_per_trial == 1 and spec.budget["max_epochs"] <= 30
