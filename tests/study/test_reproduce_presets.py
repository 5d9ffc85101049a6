"""The reproduction presets (issue 8): their grids cross VAE + M × K with the three estimators."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from study.spec import load_spec

PRESETS = {"reproduce_fashion": (3, "fashion_mnist"), "reproduce_frey": (3, "frey"),
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


@pytest.mark.parametrize("name", ["reproduce_fashion", "reproduce_fashion_gpu"])
def test_reproduction_presets_plan_claim_g(name):
    # claim (g): VampPrior (M = 1, mc) and GMMpVAE (M > 1, greedy and lse, uniform π) at every
    # K of the same seeds, and the VAE per estimator
    plan = load_spec(name).plan()
    cells = {(t["prior"], t["kl_estimator"], t["M"], t.get("K"), t["seed"]) for t in plan
             if t["prior"] == "standard" or max(t["pi"]) - min(t["pi"]) < 1e-9}
    seeds = {t["seed"] for t in plan}
    for seed in seeds:
        for k in (10, 100, 500):
            assert ("pseudo_mixture", "mc", 1, k, seed) in cells
            for est, m in itertools.product(("greedy", "lse"), (2, 3)):
                assert ("pseudo_mixture", est, m, k, seed) in cells
        for est in ("greedy", "lse"):
            assert any(c[:2] == ("standard", est) and c[4] == seed for c in cells)
