"""The ``[tracking]`` section and its flags, the refusal of a missing extra (before Ray), and
what the trackers log: tags, hyperparameters, run ids. No Ray, no tracker server."""

from __future__ import annotations

import contextlib
import io
import math

import pytest

from study.cli.main import main
from study.spec import StudySpec, load_spec
from study.watch import trackers, tracking

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


def _file(tmp_path, extra: str = "") -> str:
    path = tmp_path / "s.toml"
    path.write_text(GOOD.format(storage=tmp_path / "s") + extra)
    return str(path)


def test_section_from_the_file_and_the_flags_round_trips(tmp_path):
    spec = load_spec(_file(tmp_path, '\n[tracking]\ntensorboard = true\nmlflow = true\n'
                                     'wandb = {project = "p"}\n'))
    t = spec.tracking
    assert (t.tensorboard, t.mlflow, t.wandb_project, t.wandb_mode) == (True, "", "p", "offline")
    assert t.enabled == ("tensorboard", "mlflow", "wandb")
    assert StudySpec.from_dict(spec.to_dict()).tracking == t
    flags = load_spec(_file(tmp_path), {"tracking.mlflow": "http://127.0.0.1:5000",
                                        "tracking.wandb.project": "q",
                                        "tracking.wandb.mode": "online"})
    assert flags.tracking.mlflow == "http://127.0.0.1:5000"
    assert (flags.tracking.wandb_project, flags.tracking.wandb_mode) == ("q", "online")
    assert load_spec(_file(tmp_path)).tracking.enabled == ()
    assert tracking.mlflow_uri("", "/x/s") == "sqlite:////x/s/mlflow.db"


@pytest.mark.parametrize("text,fragment", [
    ("tensorboard = 1", "tracking.tensorboard=1 is invalid: expected true or false"),
    ("mlflow = 3", "tracking.mlflow=3 is invalid"),
    ('wandb = "p"', "tracking.wandb='p' is invalid: expected a table"),
    ('wandb = {project = "p", mode = "cloud"}', "tracking.wandb.mode='cloud' is invalid"),
    ('wandb = {project = "p", entity = "e"}', "tracking.wandb.entity='e' is invalid"),
    ("wandb = {mode = \"offline\"}", "tracking.wandb.project=None is invalid"),
    ("neptune = true", "unknown key tracking.neptune"),
])
def test_bad_tracking_is_one_line_exit_2_nothing_written(tmp_path, text, fragment):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", _file(tmp_path, f"\n[tracking]\n{text}\n")])
    assert code == 2 and fragment in err.getvalue(), err.getvalue()
    assert err.getvalue().count("\n") == 1 and not (tmp_path / "s").exists()


def test_a_missing_tracker_package_is_refused_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(tracking.REQUIREMENTS, "mlflow", (("no_such_module_16",), "tracking"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", _file(tmp_path), "--mlflow", "--dry-run"])
    assert code == 2
    assert err.getvalue() == ("gmmpvae run: error: mlflow needs the 'no_such_module_16' "
                              "package, which is not installed: pip install "
                              "'gmmpvae-study[tracking]'\n")
    assert not (tmp_path / "s").exists()


def test_trackers_writing_into_the_folder_refuse_a_uri_storage():
    section = tracking.TrackingSection(tensorboard=True)
    with pytest.raises(ValueError, match="tracking.tensorboard writes into the study folder"):
        tracking.check_storage(section, "s3://bucket/study")
    tracking.check_storage(tracking.TrackingSection(mlflow="http://127.0.0.1:5000"),
                           "s3://bucket/study")


def test_epoch_and_final_tags_drop_missing_and_non_finite_values():
    row = {"epoch": 3, "beta": 0.5, "train_loss": 10.0, "train_re": 8.0, "train_kl": 4.0,
           "val_loss": 11.0, "val_re": 9.0, "val_kl": math.nan, "seconds": 0.2,
           "spread_ratio": 0.01, "members_used": 2.0, "resp_perplexity": None,
           "bound_gap": 1.5, "lse_gap": 0.5}
    assert trackers.epoch_metrics(row) == {
        "beta": 0.5, "train/loss": 10.0, "train/re": 8.0, "train/kl": 4.0, "val/loss": 11.0,
        "val/re": 9.0, "epoch_seconds": 0.2, "collapse/spread_ratio": 0.01,
        "collapse/members_used": 2.0, "collapse/bound_gap": 1.5, "collapse/lse_gap": 0.5}
    final = trackers.final_metrics({"test_ll": -90.5, "test_kl": 3.0, "test_kl_mc": 2.5,
                                    "test_kl_lse": 2.8, "epochs_run": 7, "state": "COMPLETED",
                                    "best_val_loss": True})
    assert final == {"test/ll": -90.5, "test/kl": 3.0, "test/kl_mc": 2.5, "test/kl_lse": 2.8,
                     "final/epochs_run": 7.0}


def test_hparams_and_run_ids():
    hp = trackers.hparams({"dataset": "mnist", "arch": "cnn", "prior": "pseudo_mixture",
                           "M": 3, "K": None, "pi": [0.5, 0.25, 0.25], "kl_estimator": "lse",
                           "seed": 2, "latent_dim": 40, "lr": 5e-4, "max_epochs": 100,
                           "hidden_dim": 300})
    assert hp == {"dataset": "mnist", "arch": "cnn", "prior": "pseudo_mixture", "M": 3,
                  "K": "-", "pi": "[0.5, 0.25, 0.25]", "kl_estimator": "lse", "seed": 2,
                  "latent_dim": 40, "lr": 5e-4, "max_epochs": 100}
    key = "mnist-cnn-m3-k500-lse-s2-0123456789ab"
    first = trackers.run_id("study", key)
    assert first == trackers.run_id("study", key) != trackers.run_id("other", key)
    assert len(first) <= 64 and "/" not in first
