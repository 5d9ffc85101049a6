"""Study files and presets → StudySpec: validation (one-line errors), overrides, plans."""

from __future__ import annotations

import importlib.util
import json
import os

import optuna
import pytest

from models.config import TrialConfig
from search_spaces import trial_fields, trial_key
from study.optuna_study import make_sampler
from study.spec import FIELD_HELP, KEYS, OVERRIDE_FLAGS, StudySpec, list_presets, load_spec
from study.store import check_writable
from study.summary import describe

BASE = '[data]\ndataset = "digits"\n[search]\nspace = "quickstart"\n'
OPEN = '[data]\ndataset = "digits"\n[search]\nspace = "open"\nnum_samples = 4\n'


def _write(tmp_path, text: str, name: str = "study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_presets_load_and_validate():
    assert set(list_presets()) >= {"quickstart", "table1_mnist", "figure3_mnist",
                                   "figure4_mnist", "open_search"}
    sizes = {"quickstart": 14, "table1_mnist": 90, "figure3_mnist": 30, "figure4_mnist": 33}
    for name in list_presets():
        spec = load_spec(name)
        assert spec.name == name and spec.source == f"preset '{name}'"
        if name in sizes:
            assert len(spec.plan()) == spec.search.num_samples == sizes[name]
    paper = load_spec("table1_mnist")
    assert (paper.budget["max_epochs"], paper.budget["warmup_epochs"], paper.budget["patience"],
            paper.budget["is_samples"], paper.search.seeds) == (5000, 200, 100, 5000, 3)


def test_quickstart_is_small():
    spec = load_spec("quickstart")
    assert spec.resources.cpus_per_trial == 1 and spec.resources.gpus_per_trial == 0
    assert spec.budget["max_epochs"] <= 60 and spec.budget["is_samples"] <= 1000
    assert all(t["dataset"] == "digits" and t["arch"] == "mlp" for t in spec.plan())


def test_describe_lists_every_grid_trial():
    for name in ("quickstart", "table1_mnist", "figure4_mnist"):
        spec = load_spec(name)
        text = describe(spec)
        for trial in spec.plan():
            assert trial["trial_key"] in text
        assert spec.storage in text and "scheduler" in text and "resources" in text
    assert "up to 100" in describe(load_spec("open_search"))


def test_overrides_apply(tmp_path):
    spec = load_spec("quickstart", overrides={
        "budget.max_epochs": 3, "search.seeds": 1, "resources.gpus_per_trial": None,
        "study.storage": str(tmp_path / "s"), "study.name": "tiny",
        "resources.max_concurrent": 2, "failure.retries": 0, "scheduler.kind": "asha",
        "failure.outage_grace": 30.0,
    })
    plan = spec.plan()
    assert len(plan) == 7 and spec.search.num_samples == 7
    assert all(t["max_epochs"] == 3 and t["seed"] == 0 for t in plan)
    assert spec.storage == str(tmp_path / "s") and spec.name == "tiny"
    assert spec.resources.max_concurrent == 2 and spec.failure.retries == 0
    assert spec.failure.outage_grace == 30.0
    assert spec.scheduler.kind == "asha" and spec.scheduler.max_t == 3
    assert spec.scheduler.grace_period == 3  # the preset's warm-up (20), capped at max_t
    with pytest.raises(ValueError, match=r"^command line: budget.max_epochs=-1 is invalid"):
        load_spec("quickstart", overrides={"budget.max_epochs": -1})
    with pytest.raises(ValueError, match=r"^unknown override 'budget.epochs'"):
        load_spec("quickstart", overrides={"budget.epochs": 3})


def test_override_flags_name_real_fields():
    flags = [f for f, _, _ in OVERRIDE_FLAGS]
    assert len(set(flags)) == len(flags)
    for flag, key, kind in OVERRIDE_FLAGS:
        section, name = key.split(".")
        assert name in KEYS[section] and key in FIELD_HELP and kind in (int, float, str)
        assert flag.startswith("--")


def test_open_search_ranks_by_the_validation_mc_elbo_and_trains_with_lse():
    spec = load_spec("open_search")
    assert (spec.search.metric, spec.search.mode) == ("val_elbo_mc", "max")
    assert spec.model["kl_estimator"] == "lse" and spec.scheduler.kind == "asha"
    assert "precision" not in spec.search_space.searched


def test_claims_margin_is_a_study_setting_saved_in_study_json(tmp_path):
    spec = load_spec(str(_write(tmp_path, BASE + "[claims]\npi_margin = 0.5\n")))
    assert spec.claims.pi_margin == 0.5
    assert json.loads(json.dumps(spec.to_dict()))["claims"] == {"pi_margin": 0.5,
                                                                "smallest_effect": None}
    assert load_spec(str(_write(tmp_path, BASE, "d.toml"))).claims.pi_margin == 0.3


def test_round_trip_through_json():
    for name in list_presets():
        spec = load_spec(name)
        again = StudySpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again == spec
        assert again.plan() == spec.plan()


def test_defaults_and_fixed_fields(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(str(_write(tmp_path, BASE + '[model]\nlatent_dim = 8\n', "mine.toml")))
    assert spec.name == "mine" and spec.storage == os.path.join(str(tmp_path), "studies", "mine")
    assert spec.optuna_storage_url == os.path.join(spec.storage, "optuna.journal")
    assert spec.search.sampler == "grid" and spec.search.seeds == 3
    assert spec.scheduler.kind == "fifo" and spec.failure.retries == 2
    assert (spec.failure.stranded_grace, spec.failure.outage_grace) == (600.0, 120.0)
    assert spec.fixed_trial_fields() == {"dataset": "digits", "latent_dim": 8}
    assert isinstance(make_sampler(spec), optuna.samplers.RandomSampler)  # never draws
    spec = load_spec(str(_write(tmp_path, OPEN + '[study]\noptuna_storage = "sqlite:///o.db"\n')))
    assert spec.search.sampler == "tpe" and spec.search.seeds == 1
    assert spec.optuna_storage_url == "sqlite:///o.db" and not spec.optuna_storage_is_journal
    assert isinstance(make_sampler(spec), optuna.samplers.TPESampler)


def test_open_spec_suggests_complete_trials(tmp_path):
    spec = load_spec("open_search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(spec))
    for _ in range(5):
        trial = study.ask()
        config = spec.suggest(trial)
        key = config.pop("trial_key")
        assert key.startswith("mnist-")
        assert TrialConfig.from_flat(config).train.max_epochs == 1000
        study.tell(trial, 0.0)
    assert spec.plan() is None


def test_grid_datasets_without_data_section(tmp_path):
    text = ('[search]\nspace = "figure4"\nseeds = 1\n[search.grid]\n'
            'datasets = ["mnist", "frey"]\nMs = [2]\n')
    spec = load_spec(str(_write(tmp_path, text)))
    assert len(spec.plan()) == 10
    assert {t["likelihood"] for t in spec.plan() if t["dataset"] == "frey"} == {"logistic"}


def test_cmaes_needs_its_package(tmp_path):
    path = _write(tmp_path, OPEN.replace("num_samples", 'sampler = "cmaes"\nnum_samples'))
    if importlib.util.find_spec("cmaes") is None:
        with pytest.raises(ValueError, match="search.sampler='cmaes'.*pip install cmaes"):
            load_spec(str(path))
    else:
        assert load_spec(str(path)).search.sampler == "cmaes"


BAD = [
    ("unknown_section", BASE + "[colours]\nred = 1\n", "unknown section [colours]"),
    ("unknown_key", BASE + "[budget]\nmax_epoch = 3\n", "unknown key budget.max_epoch"),
    ("derived_key", BASE + "[model]\nimage_shape = [8, 8]\n", "unknown key model.image_shape"),
    ("wrong_type", BASE.replace('"quickstart"\n', '"quickstart"\nseeds = "3"\n'),
     "search.seeds='3'"),
    ("bool_for_int", BASE + "[failure]\nretries = true\n", "failure.retries=True"),
    ("outage_grace_zero", BASE + "[failure]\noutage_grace = 0\n", "failure.outage_grace=0"),
    ("pi_off_simplex", OPEN + "[model]\nM = 2\npi = [0.3, 0.3]\n", "model.pi=[0.3, 0.3]"),
    ("pi_wrong_length", OPEN + "[model]\nM = 3\npi = [0.5, 0.5]\n", "model.pi=[0.5, 0.5]"),
    ("grid_pi_off_simplex",
     BASE.replace("quickstart", "figure4") + "[search.grid]\npis = [[0.3, 0.3]]\n",
     "search.grid.pis=[[0.3, 0.3]] is invalid: pi="),
    ("unknown_dataset", BASE.replace("digits", "cifar"), "data.dataset='cifar'"),
    ("missing_dataset", '[search]\nspace = "quickstart"\n', "data.dataset is missing"),
    ("unknown_arch", BASE + '[model]\narch = "resnet"\n', "model.arch='resnet'"),
    ("unknown_arch_in_grid", BASE + '[search.grid]\narchs = ["resnet"]\n', "search.grid.archs"),
    ("unknown_space", BASE.replace('"quickstart"', '"nope"'), "search.space='nope'"),
    ("missing_space", '[data]\ndataset = "digits"\n', "search.space is missing"),
    ("unknown_sampler", OPEN.replace("num_samples", 'sampler = "bayes"\nnum_samples'),
     "search.sampler='bayes'"),
    ("unknown_scheduler", BASE + '[scheduler]\nkind = "hyperband"\n', "scheduler.kind='hyperband'"),
    ("grid_sampler_open_space", OPEN.replace("num_samples", 'sampler = "grid"\nnum_samples'),
     "search.sampler='grid'"),
    ("tpe_on_grid_space", BASE.replace('"quickstart"\n', '"quickstart"\nsampler = "tpe"\n'),
     "search.sampler='tpe'"),
    ("negative_cpus", BASE + "[resources]\ncpus_per_trial = -1\n", "resources.cpus_per_trial=-1"),
    ("fractional_gpus_above_one", BASE + "[resources]\ngpus_per_trial = 1.5\n",
     "resources.gpus_per_trial=1.5"),
    ("zero_concurrent", BASE + "[resources]\nmax_concurrent = 0\n", "resources.max_concurrent=0"),
    ("num_samples_zero", OPEN.replace("= 4", "= 0"), "search.num_samples=0"),
    ("num_samples_missing", OPEN.replace("num_samples = 4\n", ""), "search.num_samples is missing"),
    ("num_samples_not_grid_size",
     BASE.replace('"quickstart"\n', '"quickstart"\nnum_samples = 5\n'), "search.num_samples=5"),
    ("open_seeds", OPEN + "seeds = 3\n", "search.seeds=3"),
    ("malformed_toml", BASE + "[budget\nmax_epochs = 3\n", "malformed TOML"),
    ("grid_sets_M", BASE.replace("quickstart", "table1") + "[model]\nM = 2\n", "model.M=2"),
    ("grid_param_unknown", BASE + "[search.grid]\ncolours = [1]\n", "search.grid.colours"),
    ("grid_on_open_space", OPEN + "[search.grid]\nKs = [1]\n", "search.grid is only"),
    ("dataset_twice", BASE.replace("quickstart", "figure4") + '[search.grid]\n'
     'datasets = ["mnist"]\n', "data.dataset='digits' is fixed"),
    ("asha_on_final_metric", OPEN + 'metric = "test_ll"\n[scheduler]\nkind = "asha"\n',
     "scheduler.kind='asha'"),
    ("mode_mismatch", OPEN + 'mode = "max"\n', "search.mode='max'"),
    ("unknown_metric", OPEN + 'metric = "accuracy"\n', "search.metric='accuracy'"),
    ("grace_above_max_t", BASE + "[scheduler]\nmax_t = 5\ngrace_period = 6\n",
     "scheduler.grace_period=6"),
    ("bad_budget", BASE + "[budget]\nmax_epochs = 0\n", "budget.max_epochs=0"),
    ("bad_model_value", BASE + "[model]\nlatent_dim = 0\n", "model.latent_dim=0"),
    ("bad_address", BASE + '[study]\naddress = "not an address"\n', "study.address="),
    ("bad_name", BASE + '[study]\nname = "a b"\n', "study.name='a b'"),
    ("uri_without_optuna_storage", BASE + '[study]\nstorage = "s3://bucket/x"\n',
     "study.optuna_storage is missing"),
    ("bad_optuna_storage", BASE + '[study]\noptuna_storage = "redis://x"\n',
     "study.optuna_storage='redis://x'"),
    ("mixture_weights_M", OPEN.replace('"open"', '"mixture_weights"') + "[model]\nM = 4\n",
     "model.M=4"),
    ("cuda_without_gpus", BASE + '[budget]\ndevice = "cuda"\n', "budget.device='cuda'"),
    ("tf32_without_gpus", BASE + '[budget]\nprecision = "tf32"\n', "budget.precision='tf32'"),
    ("tf32_on_cpu", BASE + '[budget]\nprecision = "tf32"\ndevice = "cpu"\n',
     "budget.precision='tf32'"),
    ("unknown_precision", BASE + '[budget]\nprecision = "fp16"\n', "budget.precision='fp16'"),
    ("section_not_table", 'search = 3\n[data]\ndataset = "digits"\n', "[search] must be a table"),
    ("bad_pi_margin", BASE + "[claims]\npi_margin = 0\n", "claims.pi_margin=0"),
    ("bad_smallest_effect", BASE + "[claims]\nsmallest_effect = -1\n",
     "claims.smallest_effect=-1"),
]


@pytest.mark.parametrize(("text", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_study_files_give_one_line(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        load_spec(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    assert needle in message, message


def test_trial_fields_drop_searcher_parameters():
    spec = load_spec("open_search")
    trial = optuna.create_study().ask()
    config = {**spec.suggest(trial), "pi_0": 0.3}  # what Ray's OptunaSearch hands a trial
    fields = trial_fields(config)
    assert "trial_key" not in fields and "pi_0" not in fields
    assert trial_key(TrialConfig.from_flat(fields).to_flat()) == config["trial_key"]


def test_malformed_toml_reports_the_line(tmp_path):
    path = _write(tmp_path, BASE + "[budget\nmax_epochs = 3\n")
    with pytest.raises(ValueError, match=r"line 5"):
        load_spec(str(path))


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"^unknown preset 'nope': expected .* quickstart"):
        load_spec("nope")
    with pytest.raises(ValueError, match="cannot read the study file"):
        load_spec(str(tmp_path / "missing.toml"))


def test_check_storage_leaves_nothing_behind(tmp_path):
    spec = load_spec("quickstart", overrides={"study.storage": str(tmp_path / "a" / "b")})
    check_writable(spec.storage)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    spec = load_spec("quickstart", overrides={"study.storage": str(tmp_path / "file" / "s")})
    with pytest.raises(ValueError, match=r"^study.storage=.* is not writable"):
        check_writable(spec.storage)
    uri = load_spec("quickstart", overrides={"study.storage": (tmp_path / "u").as_uri(),
                                             "study.optuna_storage": "sqlite:///o.db"})
    check_writable(uri.storage)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    bad = load_spec("quickstart", overrides={"study.storage": "nosuchscheme://x/y",
                                             "study.optuna_storage": "sqlite:///o.db"})
    with pytest.raises(ValueError, match=r"^study.storage=.* is not reachable"):
        check_writable(bad.storage)


def test_precision_flows_from_budget_and_the_command_line_into_every_trial(tmp_path):
    path = _write(tmp_path, BASE + '[budget]\nprecision = "bf16"\ncompile = true\n')
    plan = load_spec(str(path)).plan()
    assert {(t["precision"], t["compile"]) for t in plan} == {("bf16", True)}
    spec = load_spec(str(_write(tmp_path, BASE)), {"budget.precision": "bf16"})
    assert {t["precision"] for t in spec.plan()} == {"bf16"}
