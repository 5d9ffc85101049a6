"""The trainer: early stopping, exact resume, seeds, non-finite losses, checkpoints."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from models import training
from models.checkpoint import CHECKPOINT_FILE, load_torch
from models.config import ModelConfig, TrainConfig, TrialConfig
from models.data import load_dataset
from models.training import (
    CheckpointMismatchError,
    EarlyStopping,
    NonFiniteLossError,
    train,
)


def tiny_config(**train_changes) -> TrialConfig:
    model = ModelConfig(image_shape=(8, 8), M=2, K=5, latent_dim=4, hidden_dim=32)
    fields = dict(dataset="digits", max_epochs=4, warmup_epochs=2, patience=50, seed=3,
                  is_samples=50, max_train_examples=250, max_test_examples=50, device="cpu")
    fields.update(train_changes)
    return TrialConfig(model, TrainConfig(**fields))



@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=250, max_test=50)


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


# ----------------------------------------------------------------------------------------------
# Early stopping


def test_early_stopping_rule_on_a_scripted_curve():
    stopper = EarlyStopping(patience=3)
    curve = [5.0, 4.0, 3.0, 3.5, 3.0, 3.2, 2.5]  # epoch 5 ties the best: not an improvement
    stop_epoch = None
    for epoch, loss in enumerate(curve, start=1):
        improved = stopper.step(epoch, loss)
        assert improved == (epoch in (1, 2, 3))
        if stopper.should_stop:
            stop_epoch = epoch
            break
    assert stop_epoch == 6
    assert (stopper.best_epoch, stopper.best_loss, stopper.bad_epochs) == (3, 3.0, 3)
    restored = EarlyStopping(patience=1)
    restored.load_state_dict(stopper.state_dict())
    assert restored.state_dict() == stopper.state_dict()


def test_early_stopping_resets_on_improvement():
    stopper = EarlyStopping(patience=2)
    for epoch, loss in enumerate([3.0, 3.1, 2.0, 2.5], start=1):
        stopper.step(epoch, loss)
    assert not stopper.should_stop and stopper.best_epoch == 3
    stopper.step(5, math.nan)  # a NaN is never an improvement
    assert stopper.should_stop


def test_trainer_stops_at_the_right_epoch_and_keeps_the_best_weights(
        digits, monkeypatch, tmp_path):
    curve = [10.0, 9.0, 8.0, 8.5, 8.2, 8.1, 7.0, 7.5]  # patience 3: best 3, stop after epoch 6
    calls = iter(curve)

    def scripted(model, x_val, epoch=0):
        loss = next(calls)
        return {"val_loss": loss, "val_re": loss, "val_kl": 0.0}

    monkeypatch.setattr(training, "validation_loss", scripted)
    seen = []

    def callback(metrics, save_checkpoint):
        seen.append(metrics)
        save_checkpoint(tmp_path / f"epoch{metrics['epoch']}")

    result = train(tiny_config(max_epochs=20, patience=3), digits, callback=callback)
    assert (result.epochs_run, result.best_epoch, result.stopped_early) == (6, 3, True)
    assert result.best_val_loss == 8.0
    assert [m["epoch"] for m in seen] == [1, 2, 3, 4, 5, 6]
    assert [m["best_epoch"] for m in seen] == [1, 2, 3, 3, 3, 3]
    assert set(seen[0]) == {
        "epoch", "beta", "train_loss", "train_re", "train_kl", "val_loss", "val_re", "val_kl",
        "seconds", "best_epoch", "best_val_loss", "spread_ratio", "members_used",
        "resp_perplexity", "bound_gap", "lse_gap",
    }
    assert all(0 < seen[-1][k] < float("inf") for k in ("spread_ratio", "members_used"))
    assert [m["beta"] for m in seen[:3]] == [0.5, 1.0, 1.0]  # warm-up min(1, epoch / 2)
    best = load_torch(tmp_path / "epoch3" / CHECKPOINT_FILE)["model"]
    last = load_torch(tmp_path / "epoch6" / CHECKPOINT_FILE)["model"]
    assert _states_equal(result.model.state_dict(), best)
    assert not _states_equal(best, last)


# ----------------------------------------------------------------------------------------------
# Seeds, checkpoints, resume


def test_same_seed_same_numbers(digits):
    cfg = tiny_config(max_epochs=2)
    a, b = train(cfg, digits), train(cfg, digits)
    assert _without_seconds(a.history) == _without_seconds(b.history)
    assert _states_equal(a.model.state_dict(), b.model.state_dict())
    c = train(tiny_config(max_epochs=2, seed=4), digits)
    assert _without_seconds(c.history) != _without_seconds(a.history)


def test_resume_from_a_mid_run_checkpoint_is_bit_identical(digits, tmp_path):
    cfg = tiny_config(max_epochs=4)
    full = train(cfg, digits, checkpoint_dir=tmp_path / "full")

    class Interrupt(Exception):
        pass

    def stop_after_two(metrics, save_checkpoint):
        if metrics["epoch"] == 2:
            save_checkpoint(tmp_path / "mid")
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, digits, callback=stop_after_two)
    resumed = train(cfg, digits, resume_from=tmp_path / "mid",
                    checkpoint_dir=tmp_path / "resumed")

    assert resumed.epochs_run == 4 and len(resumed.history) == 4
    assert _without_seconds(resumed.history) == _without_seconds(full.history)
    assert _states_equal(resumed.model.state_dict(), full.model.state_dict())  # best weights
    end_full = load_torch(tmp_path / "full" / CHECKPOINT_FILE)
    end_resumed = load_torch(tmp_path / "resumed" / CHECKPOINT_FILE)
    assert _states_equal(end_full["model"], end_resumed["model"])  # last weights
    adam_full, adam_resumed = end_full["optimizer"]["state"], end_resumed["optimizer"]["state"]
    assert all(torch.equal(adam_full[i]["exp_avg_sq"], adam_resumed[i]["exp_avg_sq"])
               for i in adam_full)
    assert torch.equal(end_full["rng"]["generator"], end_resumed["rng"]["generator"])


def test_checkpoint_contents_load_with_weights_only(digits, tmp_path):
    train(tiny_config(max_epochs=1), digits, checkpoint_dir=tmp_path)
    ckpt = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert {"model", "optimizer", "epoch", "early_stopping", "best_model", "history", "rng",
            "config"} <= set(ckpt)
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python", "generator"}
    assert ckpt["epoch"] == 1 and ckpt["config"]["seed"] == 3
    assert not list(Path(tmp_path).glob("*.tmp"))  # atomic writes leave no temporary files


def test_resume_refuses_another_configuration(digits, tmp_path):
    train(tiny_config(max_epochs=1), digits, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="lr"):
        train(tiny_config(max_epochs=1, lr=1e-3), digits, resume_from=tmp_path)


def test_resume_of_a_finished_run_trains_nothing(digits, tmp_path, monkeypatch):
    cfg = tiny_config(max_epochs=2)
    first = train(cfg, digits, checkpoint_dir=tmp_path)
    monkeypatch.setattr(training, "_train_epoch", lambda *a, **k: pytest.fail("trained again"))
    again = train(cfg, digits, resume_from=tmp_path)
    assert again.epochs_run == 2 and again.history == first.history
    assert _states_equal(again.model.state_dict(), first.model.state_dict())


# ----------------------------------------------------------------------------------------------
# Non-finite losses


def test_nan_loss_names_epoch_and_batch(digits, monkeypatch):
    from models.vae import GMMpVAE

    forward = GMMpVAE.forward
    batches_per_epoch = math.ceil(digits.train.shape[0] / 100)  # 250 images → 3 batches
    count = {"train": 0}

    def poisoned(self, x, beta=1.0):
        terms = forward(self, x, beta)
        if self.training:
            count["train"] += 1
            if count["train"] == batches_per_epoch + 2:  # epoch 2, batch 2
                terms.loss = terms.loss * math.nan
        return terms

    monkeypatch.setattr(GMMpVAE, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="epoch 2, batch 2") as info:
        train(tiny_config(max_epochs=3), digits)
    assert (info.value.epoch, info.value.batch) == (2, 2)


def test_infinite_validation_loss_is_reported(digits, monkeypatch):
    def infinite(model, x_val, epoch=0, mc_elbo=True):
        raise NonFiniteLossError(epoch, None, math.inf)

    monkeypatch.setattr(training, "validation_loss", infinite)
    with pytest.raises(NonFiniteLossError, match="epoch 1, validation"):
        train(tiny_config(max_epochs=2), digits)


def test_validation_loss_is_minus_the_bound_with_fixed_noise(digits):
    result = train(tiny_config(max_epochs=1), digits)
    model = result.model
    with training.fixed_noise(11, torch.device("cpu")):
        a = training.validation_loss(model, digits.val)
    with training.fixed_noise(11, torch.device("cpu")):
        b = training.validation_loss(model, digits.val)
    assert a == b  # common random numbers: the same noise every epoch
    assert a["val_loss"] == pytest.approx(a["val_re"] + a["val_kl"])
    with torch.no_grad(), training.fixed_noise(11, torch.device("cpu")):
        terms = model(digits.val, 1.0)
    assert a["val_loss"] == pytest.approx(float((terms.re + terms.kl).mean()), rel=1e-5)
    # the MC ELBO at the same samples: −(RE + KL_MC), the KL_MC from the model's own report
    assert a["val_elbo_mc"] == pytest.approx(-float((terms.re + terms.kl_mc).mean()), rel=1e-5)
    assert "val_elbo_mc" in result.history[0] and result.history[0]["val_elbo_mc"] < 0


def test_validation_mc_elbo_is_estimator_free(digits):
    """For the mc estimator it is −val_loss; for the bounds it lies above −val_loss
    (−(RE + U) ≤ the ELBO) and is the same for a model whatever estimator it reports with."""
    torch.manual_seed(0)
    cfg = tiny_config(max_epochs=1)
    model = train(cfg, digits).model
    values = {}
    for name in ("greedy", "lse", "mc"):
        model.config = dataclasses.replace(model.config, kl_estimator=name)
        with training.fixed_noise(3, torch.device("cpu")):
            values[name] = training.validation_loss(model, digits.val)
    assert values["mc"]["val_elbo_mc"] == pytest.approx(-values["mc"]["val_loss"])
    assert values["greedy"]["val_elbo_mc"] == pytest.approx(values["mc"]["val_elbo_mc"])
    assert values["lse"]["val_elbo_mc"] == pytest.approx(values["mc"]["val_elbo_mc"])
    # mc here is a per-sample estimate, U and U_lse bounds on the exact KL: above, on average
    assert values["greedy"]["val_elbo_mc"] > -values["greedy"]["val_loss"]
    assert training.validation_loss(model, digits.val, mc_elbo=False)["val_elbo_mc"] is None


def test_resolve_device():
    assert training.resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert training.resolve_device("auto").type == expected


def test_run_trial_resumes_from_a_given_checkpoint(digits, tmp_path):
    from models.trial import run_trial

    cfg = tiny_config(max_epochs=3)

    def save_first(metrics, save_checkpoint):
        if metrics["epoch"] == 1:
            save_checkpoint(tmp_path / "tune")

    whole = run_trial(cfg, tmp_path / "a", callback=save_first, data=digits)
    epochs = []
    resumed = run_trial(cfg, tmp_path / "b", data=digits, resume_from=tmp_path / "tune",
                        callback=lambda metrics, save: epochs.append(metrics["epoch"]))
    assert epochs == [2, 3]  # epoch 1 came from the checkpoint
    assert resumed["test_ll"] == whole["test_ll"] and resumed["epochs_run"] == 3
