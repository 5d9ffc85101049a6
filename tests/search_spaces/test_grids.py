"""The paper's grids: exact lists, counts, order, overrides and stable unique trial keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import search_spaces
from models.config import TrialConfig
from search_spaces import VAE_K, config_key, trial_key

REPO = Path(__file__).resolve().parents[2]
GRIDS = [n for n in search_spaces.names() if search_spaces.get(n).kind == "grid"]
MNIST = {"dataset": "mnist"}

PAPER_FIGURE4 = [
    [0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5],
    [0.1, 0.1, 0.8], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6], [0.3, 0.2, 0.5], [0.3, 0.3, 0.4],
    [1 / 3, 1 / 3, 1 / 3],
]


def _models(configs):
    """The distinct (arch, prior, M, pi, K) of a grid, in order."""
    out = []
    for c in configs:
        model = (c["arch"], c["prior"], c["M"], tuple(c["pi"]), c["K"])
        if model not in out:
            out.append(model)
    return out


def test_registry():
    assert set(GRIDS) == {"table1", "figure3", "figure4", "quickstart"}
    assert {"open", "mixture_weights", "quickstart_open"} <= set(search_spaces.names())
    with pytest.raises(ValueError, match=r"unknown search space 'nope': expected one of table1"):
        search_spaces.get("nope")


def test_table1_is_the_papers_grid():
    configs = search_spaces.get("table1").enumerate(MNIST, seeds=3)
    assert len(configs) == 3 * (9 + 1) * 3 == 90
    expected = []
    for arch in ("mlp", "cnn", "pixel"):
        expected.append((arch, "standard", 1, (1.0,), VAE_K))
        expected += [(arch, "pseudo_mixture", m, (1 / m,) * m, k)
                     for m in (1, 2, 3) for k in (100, 500, 1000)]
    assert _models(configs) == expected
    assert [c["seed"] for c in configs[:3]] == [0, 1, 2]


def test_figure3_defaults_and_arch_from_the_study():
    configs = search_spaces.get("figure3").enumerate(MNIST, seeds=3)
    assert len(configs) == (1 + 3 * 3) * 3 and {c["arch"] for c in configs} == {"mlp"}
    cnn = search_spaces.get("figure3").enumerate({**MNIST, "arch": "cnn"}, seeds=1,
                                                 grid={"Ks": [10, 20]})
    assert {c["arch"] for c in cnn} == {"cnn"} and len(cnn) == 1 + 3 * 2


def test_figure4_lists_exactly_as_in_the_paper():
    configs = search_spaces.get("figure4").enumerate(MNIST, seeds=1)
    assert [c["pi"] for c in configs] == PAPER_FIGURE4
    assert all(c["K"] == 500 and c["arch"] == "mlp" for c in configs)
    assert [c["M"] for c in configs] == [2] * 5 + [3] * 6
    for c in configs:
        TrialConfig.from_flat(c)  # π sums to 1 within 1e-6, 1/3 included
    crossed = search_spaces.get("figure4").enumerate(
        {}, seeds=2, grid={"datasets": ["mnist", "frey"], "archs": ["mlp", "cnn"],
                           "Ks": [100, 500]})
    assert len(crossed) == 11 * 2 * 2 * 2 * 2
    frey = [c for c in crossed if c["dataset"] == "frey"]
    assert all(c["image_shape"] == [28, 20] and c["likelihood"] == "logistic" for c in frey)
    assert len(search_spaces.get("figure4").enumerate(MNIST, 1, grid={"Ms": [3]})) == 6
    own = search_spaces.get("figure4").enumerate(MNIST, 1, grid={"pis": [[0.25, 0.75]]})
    assert [c["pi"] for c in own] == [[0.25, 0.75]]


def test_quickstart_has_14_trials_with_2_seeds():
    configs = search_spaces.get("quickstart").enumerate({"dataset": "digits"}, seeds=2)
    assert len(configs) == 14
    assert {c["K"] for c in configs if c["prior"] == "pseudo_mixture"} == {10, 50}
    assert all(c["image_shape"] == [8, 8] for c in configs)


@pytest.mark.parametrize("name", GRIDS)
def test_keys_unique_within_every_grid_and_configs_complete(name):
    configs = search_spaces.get(name).enumerate(MNIST, seeds=3)
    keys = [trial_key(c) for c in configs]
    assert len(set(keys)) == len(keys)
    for c in configs:
        assert TrialConfig.from_flat(c).to_flat() == c


@pytest.mark.parametrize(
    ("fixed", "grid", "match"),
    [
        ({**MNIST, "M": 2}, {}, r"^M=2 is fixed but the grid 'table1' sets M"),
        ({**MNIST, "seed": 1}, {}, r"seed"),
        ({**MNIST, "arch": "mlp"}, {"archs": ["cnn"]}, r"arch='mlp' is fixed and grid.archs"),
        (MNIST, {"archs": ["mlx"]}, r"^grid.archs=\['mlx'\] is invalid"),
        (MNIST, {"Ks": [100, 100]}, r"^grid.Ks="),
        (MNIST, {"Ks": []}, r"^grid.Ks="),
        (MNIST, {"colours": [1]}, r"^grid.colours is not a parameter of the grid 'table1'"),
        (MNIST, {"include_vae": "yes"}, r"^grid.include_vae"),
    ],
)
def test_bad_grid_inputs(fixed, grid, match):
    with pytest.raises(ValueError, match=match):
        search_spaces.get("table1").enumerate(fixed, seeds=1, grid=grid)


def test_figure4_pis_off_the_simplex_is_rejected():
    with pytest.raises(ValueError, match=r"^grid.pis=\[\[0.3, 0.3\]\] is invalid: pi="):
        search_spaces.get("figure4").enumerate(MNIST, 1, grid={"pis": [[0.3, 0.3]]})


def test_bad_seeds_and_wrong_kind():
    with pytest.raises(ValueError, match="seeds=0"):
        search_spaces.get("table1").enumerate(MNIST, seeds=0)
    with pytest.raises(ValueError, match="no suggest"):
        search_spaces.get("table1").suggest(None, MNIST)
    with pytest.raises(ValueError, match="no enumerate"):
        search_spaces.get("open").enumerate(MNIST, seeds=1)


def test_trial_key_identity():
    base = search_spaces.get("table1").enumerate(MNIST, seeds=1)[4]
    key = trial_key(base)
    assert key.startswith("mnist-mlp-m2-k100-greedy-s0-")
    assert trial_key({**base, "kl_estimator": "lse"}).startswith("mnist-mlp-m2-k100-lse-s0-")
    # fields that do not change the result do not change the key
    assert trial_key({**base, "device": "cuda:1", "data_dir": "/x", "eval_memory_mb": 9}) == key
    # a partial dict and its complete config share a key; a trial_key entry is ignored
    partial = {"dataset": "mnist", "arch": "mlp", "M": 2, "K": 100, "seed": 0}
    assert trial_key(partial) == key and trial_key({**base, "trial_key": "x"}) == key
    # float noise below 12 significant digits is the same configuration
    assert trial_key({**base, "lr": 5e-4 * (1 + 1e-15)}) == key
    assert trial_key({**base, "lr": 5.1e-4}) != key
    assert trial_key({**base, "seed": 1}) != key
    assert trial_key({**base, "pi": [0.4, 0.6]}) != key


def test_a_budget_is_in_the_trial_key_and_out_of_the_config_key():
    base = search_spaces.get("table1").enumerate(MNIST, seeds=1)[4]
    longer = {**base, "max_epochs": base["max_epochs"] * 2}
    assert trial_key(longer) != trial_key(base)  # one trial per configuration and budget
    assert config_key(longer) == config_key(base)  # one configuration
    assert config_key(base) != trial_key(base)
    assert config_key(base).startswith("mnist-mlp-m2-k100-greedy-s0-")
    for change in ({"seed": 1}, {"lr": 1e-3}, {"patience": 3}, {"warmup_epochs": 7}):
        assert config_key({**base, **change}) != config_key(base), change
    assert config_key({**base, "device": "cuda:0", "compile": True}) == config_key(base)


_SCRIPT = """
import json, search_spaces
keys = {n: [search_spaces.trial_key(c) for c in search_spaces.get(n).enumerate(
    {"dataset": "mnist"}, 3)] for n in search_spaces.names()
    if search_spaces.get(n).kind == "grid"}
print(json.dumps(keys))
"""


def test_trial_keys_are_stable_across_processes():
    here = {n: [trial_key(c) for c in search_spaces.get(n).enumerate(MNIST, 3)] for n in GRIDS}
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == here


def test_every_dataset_has_its_model_fields():
    from models.config import DATASETS, ModelConfig

    data = pytest.importorskip("models.data")
    assert set(data.DATASETS) == set(search_spaces.DATASET_MODEL_FIELDS) == set(DATASETS)
    for name, spec in data.DATASETS.items():
        fields = search_spaces.DATASET_MODEL_FIELDS[name]
        assert (list(spec.image_shape), spec.likelihood) == (fields["image_shape"],
                                                             fields["likelihood"])
        ModelConfig(image_shape=spec.image_shape, likelihood=spec.likelihood)  # valid values


def test_precision_enters_the_key_only_away_from_its_default_and_compile_never():
    base = {"dataset": "digits", "M": 2, "K": 10}
    assert trial_key({**base, "precision": "fp32"}) == trial_key(base)
    assert trial_key({**base, "compile": True}) == trial_key(base)  # how fast, not what
    assert trial_key({**base, "precision": "bf16"}) != trial_key(base)


def test_estimators_axis_crosses_every_model_and_keys_name_it():
    grid = {"Ks": [10], "estimators": ["greedy", "lse", "mc"]}
    configs = search_spaces.get("quickstart").enumerate({"dataset": "digits"}, 2, grid)
    assert len(configs) == 3 * (1 + 3) * 2  # estimators x (VAE + M 1..3) x seeds
    keys = [trial_key(c) for c in configs]
    assert len(set(keys)) == len(keys)
    for est in ("greedy", "lse", "mc"):
        assert sum(c["kl_estimator"] == est for c in configs) == 8
        assert sum(f"-{est}-s" in k for k in keys) == 8
    plain = search_spaces.get("quickstart").enumerate({"dataset": "digits"}, 2, {"Ks": [10]})
    assert [trial_key(c) for c in plain] == keys[:8]  # greedy: the default, same keys
    for fixed, bad, match in (({"kl_estimator": "mc"}, grid, "in one place"),
                              ({}, {"estimators": ["exact"]}, "grid.estimators")):
        with pytest.raises(ValueError, match=match):
            search_spaces.get("quickstart").enumerate({"dataset": "digits", **fixed}, 1, bad)


def test_estimator_keys_are_stable_across_processes():
    script = ("import json, search_spaces\nprint(json.dumps([search_spaces.trial_key(c) for c in "
              "search_spaces.get('figure4').enumerate({'dataset': 'mnist'}, 2, "
              "{'estimators': ['lse', 'mc']})]))")
    here = [trial_key(c) for c in search_spaces.get("figure4").enumerate(
        MNIST, 2, {"estimators": ["lse", "mc"]})]
    env = {**os.environ, "PYTHONHASHSEED": "999", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == here
