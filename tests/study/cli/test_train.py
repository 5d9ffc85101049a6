"""`gmmpvae train` end to end on digits: the trial folder, resuming, and bad input."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch

from models import trial as trial_module
from study.cli import main

TINY = [
    "train", "--dataset", "digits", "--M", "2", "--K", "6", "--latent-dim", "4",
    "--hidden-dim", "32", "--max-epochs", "3", "--warmup-epochs", "2", "--is-samples", "64",
    "--max-train-examples", "200", "--max-test-examples", "30", "--device", "cpu",
    "--no-progress",
]
TRIAL_FILES = (
    "config.json", "epochs.parquet", "test_ll.parquet", "metrics.json", "best.pt",
    "checkpoint/checkpoint.pt", "reconstructions.png", "samples.png",
)



@pytest.fixture(scope="module")
def trial_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("trial") / "run"
    torch.set_num_threads(1)
    assert main([*TINY, "--out", str(out)]) == 0
    return out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "error" in err[0]
    return err[0]


def test_train_writes_every_file_of_the_trial_folder(trial_dir):
    for name in TRIAL_FILES:
        assert (trial_dir / name).is_file(), name
    assert not list(trial_dir.rglob("*.tmp"))
    config = json.loads((trial_dir / "config.json").read_text())
    assert config["image_shape"] == [8, 8] and config["likelihood"] == "bernoulli"
    assert config["M"] == 2 and config["pi"] == [0.5, 0.5] and config["resolved_device"] == "cpu"
    metrics = json.loads((trial_dir / "metrics.json").read_text())
    assert set(metrics) == set(trial_module.METRIC_KEYS)
    assert metrics["epochs_run"] == 3 and metrics["n_test"] == 30 and metrics["is_samples"] == 64
    assert metrics["test_ll"] >= metrics["test_elbo_mc"]
    epochs = pl.read_parquet(trial_dir / "epochs.parquet")
    assert epochs.columns == ["epoch", "beta", "train_loss", "train_re", "train_kl", "val_loss",
                              "val_re", "val_kl", "val_elbo_mc", "seconds", "spread_ratio",
                              "members_used",
                              "resp_perplexity", "bound_gap", "lse_gap"]
    assert epochs["epoch"].to_list() == [1, 2, 3] and epochs["beta"].to_list() == [0.5, 1, 1]
    test_ll = pl.read_parquet(trial_dir / "test_ll.parquet")
    assert test_ll.columns == ["image", "log_likelihood", "elbo_bound", "elbo_mc", "re",
                               "kl_bound", "kl_mc", "kl_lse"]
    assert (test_ll["kl_lse"] <= test_ll["kl_bound"] + 1e-9).all()  # U_lse ≤ U, per image
    assert test_ll.height == 30
    assert test_ll["log_likelihood"].mean() == pytest.approx(metrics["test_ll"])
    best = torch.load(trial_dir / "best.pt", weights_only=True)
    assert best["best_epoch"] == metrics["best_epoch"] and "model" in best


def test_rerun_returns_the_result_without_training(trial_dir, monkeypatch, capsys):
    monkeypatch.setattr(trial_module, "train", lambda *a, **k: pytest.fail("trained again"))
    assert main([*TINY, "--out", str(trial_dir)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test_ll"] == json.loads((trial_dir / "metrics.json").read_text())["test_ll"]


def test_rerun_after_a_crash_resumes_from_the_checkpoint(trial_dir, monkeypatch, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(trial_dir, out)
    (out / "metrics.json").unlink()  # as if the process died after the last epoch
    before = pl.read_parquet(out / "epochs.parquet")
    from models import training

    monkeypatch.setattr(training, "_train_epoch", lambda *a, **k: pytest.fail("trained again"))
    assert main([*TINY, "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file()
    assert pl.read_parquet(out / "epochs.parquet").equals(before)  # history from the checkpoint


def test_another_config_in_the_same_folder_is_refused(trial_dir, capsys):
    assert main([*TINY, "--K", "7", "--out", str(trial_dir)]) == 2
    line = _one_error_line(capsys)
    assert "another trial" in line and "K: 6 -> 7" in line


def test_a_larger_max_epochs_continues_the_finished_trial(trial_dir, tmp_path, capsys):
    """docs/BUDGETS.md: the folder continues from its checkpoint to 5 epochs, the 3-epoch
    result kept in budgets/3/; a smaller budget is refused in one line."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(trial_dir, out)
    before = json.loads((out / "metrics.json").read_text())
    longer = [*TINY, "--max-epochs", "5", "--out", str(out)]  # the later flag wins
    assert main(longer) == 0
    capsys.readouterr()
    after = json.loads((out / "metrics.json").read_text())
    assert after["epochs_run"] == 5 and json.loads((out / "budgets/3/metrics.json").read_text()) \
        == before
    assert pl.read_parquet(out / "epochs.parquet")["epoch"].to_list() == [1, 2, 3, 4, 5]
    assert main([*TINY, "--max-epochs", "2", "--out", str(out)]) == 2
    assert "max_epochs: 5 -> 2 (it may only grow)" in _one_error_line(capsys)


def test_toml_config_with_flags_overriding(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('latent_dim = 4\n[model]\npi = [0.25, 0.75]\nK = 9\n'
                      '[train]\nmax_epochs = 1\nis_samples = 8\n')
    out = tmp_path / "t"
    i = TINY.index("--M")
    assert TINY[i : i + 4] == ["--M", "2", "--K", "6"]
    args = TINY[:i] + TINY[i + 4 :]
    # TINY's --max-epochs 3 overrides the file's max_epochs = 1; --pi alone would set M.
    assert main([*args, "--config", str(config), "--K", "5", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["M"], saved["pi"], saved["K"]) == (2, [0.25, 0.75], 5)
    assert (saved["max_epochs"], saved["is_samples"], saved["latent_dim"]) == (3, 64, 4)


@pytest.mark.parametrize("bad", [
    ["--dataset", "imagenet"],  # unknown dataset
    ["--pi", "0.3,0.6"],  # does not sum to 1
    ["--pi", "a,b"],
    ["--K", "many"],
    ["--K", "0"],
    ["--bogus-flag", "1"],
    ["--kl-estimator", "exact"],
    ["--config", "/nonexistent/study.toml"],
])
def test_bad_input_is_one_line_and_exit_2(bad, tmp_path, capsys):
    assert _exit_status([*TINY, *bad, "--out", str(tmp_path / "x")]) == 2
    _one_error_line(capsys)
    assert not (tmp_path / "x").exists()  # nothing written


def _exit_status(argv: list[str]) -> int:
    """main's return value, or the status of the SystemExit argparse raises for bad flags."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_missing_data_file_is_one_line_and_exit_2(tmp_path, capsys):
    argv = [*TINY, "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"),
            "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    assert "mnist" in _one_error_line(capsys)


def test_toml_may_not_set_derived_fields(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("image_shape = [28, 28]\n")
    assert main([*TINY, "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    assert "image_shape" in _one_error_line(capsys)


def test_precision_and_compile_flags(capsys):
    import argparse

    from study.cli import train as cmd_train

    parser = argparse.ArgumentParser()
    cmd_train.add_arguments(parser)
    args = parser.parse_args(["--precision", "bf16", "--compile", "true", "--dataset", "digits"])
    cfg = cmd_train.build_config(args)
    assert (cfg.train.precision, cfg.train.compile) == ("bf16", True)
    assert cmd_train.build_config(parser.parse_args(["--compile", "off"])).train.compile is False
    assert main(["train", "--compile", "maybe"]) == 2
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err
    assert main(["train", "--precision", "fp16"]) == 2
