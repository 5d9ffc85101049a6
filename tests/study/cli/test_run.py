"""`gmmpvae run`: bad study files give one line and exit status 2 with nothing written;
``--dry-run`` lists a grid's trials and the resources. No Ray is started here."""

from __future__ import annotations

import sys

import pytest

from study import cli
from study.spec import load_spec

GOOD = """
[study]
name = "s"
storage = "{storage}"
[data]
dataset = "digits"
[search]
space = "quickstart"
seeds = 1
[budget]
max_epochs = 2
"""


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


def bad_files(storage: str) -> dict[str, tuple[str, str]]:
    """name -> (study file text, a fragment its error line must hold)."""
    good = GOOD.format(storage=storage)
    return {
        "malformed TOML": ("[study\nname = 's'", "malformed TOML"),
        "unknown section": (good + "\n[extra]\nx = 1\n", "unknown section [extra]"),
        "unknown model key": (good + "\n[model]\nlatent_size = 8\n", "latent_size"),
        "bad model value": (good + "\n[model]\nlatent_dim = 0\n", "latent_dim"),
        "unknown space": (good.replace('"quickstart"', '"nope"'), "search.space"),
        "open space without num_samples": (
            good.replace('"quickstart"', '"quickstart_open"').replace("seeds = 1", ""),
            "search.num_samples"),
        "sampler of another kind": (good.replace("seeds = 1", 'seeds = 1\nsampler = "tpe"'),
                                    "search.sampler"),
        "asha on an end-of-trial metric": (
            good.replace("seeds = 1", 'seeds = 1\nmetric = "test_ll"')
            + '\n[scheduler]\nkind = "asha"\n', "asha"),
        "no node has the GPUs": (
            good + f"\n[resources]\ngpus_per_trial = {_cuda_count() + 1}\n",
            "gpus_per_trial"),
        "no node has the CPUs": (good + "\n[resources]\ncpus_per_trial = 64\n",
                                 "cpus_per_trial=64 cannot be satisfied"),
        "storage under /proc": (good.replace(storage, "/proc/gmmpvae-study/x"),
                                "not writable"),
        "unknown storage scheme": (
            good.replace(storage, "nosuchfs://bucket/studies/s")
            + "", "storage"),
        "unreachable RDB": (
            good.replace('storage = "', 'optuna_storage = "postgresql://u@127.0.0.1:9/db"\n'
                         'storage = "'), "optuna_storage"),
        "negative retries": (good + "\n[failure]\nretries = -1\n", "failure.retries"),
    }


@pytest.mark.parametrize("case", list(bad_files("X")))
def test_bad_study_file_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    storage = tmp_path / "study"
    text, fragment = bad_files(str(storage))[case]
    if case == "unknown storage scheme":  # a URI storage needs an Optuna storage of its own
        text = text.replace("[study]\n", f'[study]\noptuna_storage = "{tmp_path}/o.journal"\n')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code = cli.main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("gmmpvae run: error: ") and fragment in err
    assert not storage.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]
    assert "ray" not in sys.modules or not _ray_initialized()


def _ray_initialized() -> bool:
    import ray

    return ray.is_initialized()


def test_missing_file_and_unknown_preset(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "none.toml")]) == 2
    assert cli.main(["run", "no_such_preset"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "cannot read" in err[0] and "unknown preset" in err[1]


def test_bad_override_flag_value(tmp_path, capsys):
    assert cli.main(["run", "quickstart", "--storage", str(tmp_path / "q"),
                     "--max-epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_epochs" in err[0] and "command line" in err[0]
    assert not (tmp_path / "q").exists()


def test_existing_study_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "study.json").write_text("{}")
    assert cli.main(["run", "quickstart", "--storage", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gmmpvae resume" in err[0]


def test_dry_run_prints_every_grid_trial_and_the_resources(tmp_path, capsys):
    storage = tmp_path / "q"
    code = cli.main(["run", "quickstart", "--dry-run", "--storage", str(storage),
                     "--max-concurrent", "1"])
    out = capsys.readouterr().out
    assert code == 0
    spec = load_spec("quickstart", {"study.storage": str(storage)})
    plan = spec.plan()
    assert len(plan) == 14
    for trial in plan:
        assert trial["trial_key"] in out
    assert "trials     14:" in out
    assert "resources  1 CPU + 0 GPU per trial" in out and "1 trial(s) at once" in out
    assert not storage.exists()
