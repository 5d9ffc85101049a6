"""Continuing a trial to a larger budget (``max_epochs``): exact, and nothing of the smaller
budget lost.

A trial run for 6 epochs and continued to 12 must give the 12-epoch run from scratch: the same
epoch rows 7-12 (warm-up β across the boundary, the data order, the validation noise), the same
best weights (the best epoch in either part), the same early-stopping decision and the same test
IS LL. Small digits configs (250 training images); each case trains 18 epochs in all.
"""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest
import torch

from models import training
from models.checkpoint import CHECKPOINT_FILE
from models.config import ModelConfig, TrainConfig, TrialConfig
from models.data import load_dataset
from models.records import METRICS_FILE
from models.training import CheckpointMismatchError, train
from models.trial import (
    BUDGET_FILES,
    BUDGETS_DIR,
    CHECKPOINT_DIR,
    EPOCHS_FILE,
    TEST_LL_FILE,
    TrialFolderError,
    run_trial,
)

SHORT, LONG = 6, 12
# β = min(1, epoch / 8): still warming up on both sides of the boundary at epoch 6.
WARMUP = 8


def config(max_epochs: int, **changes) -> TrialConfig:
    model = ModelConfig(image_shape=(8, 8), M=2, K=5, latent_dim=4, hidden_dim=32)
    fields = dict(dataset="digits", max_epochs=max_epochs, warmup_epochs=WARMUP, patience=50,
                  seed=5, is_samples=20, max_train_examples=250, max_test_examples=40,
                  device="cpu")
    fields.update(changes)
    return TrialConfig(model, TrainConfig(**fields))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=250, max_test=40)


def rows(folder) -> list[dict]:
    """The folder's epoch rows without the wall-clock seconds."""
    table = pq.read_table(folder / EPOCHS_FILE).drop_columns(["seconds"])
    return table.to_pylist()


def metrics_of(folder) -> dict:
    return json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))


def assert_same_trial(continued, scratch) -> None:
    """Epoch rows 7-12 equal (every column but seconds), the same best epoch and stop, the
    same test IS LL (to 1e-6) and per-image numbers."""
    a, b = metrics_of(continued), metrics_of(scratch)
    assert rows(continued) == rows(scratch)
    assert [r["epoch"] for r in rows(continued)][SHORT:] == list(range(SHORT + 1,
                                                                      a["epochs_run"] + 1))
    for name in ("epochs_run", "best_epoch", "stopped_early"):
        assert a[name] == b[name], name
    for name in ("best_val_loss", "test_ll", "test_elbo_mc", "test_elbo_bound", "test_kl"):
        assert math.isclose(a[name], b[name], rel_tol=0, abs_tol=1e-6), name
    test_a, test_b = pq.read_table(continued / TEST_LL_FILE), pq.read_table(scratch / TEST_LL_FILE)
    assert test_a.equals(test_b)


def worse_after(monkeypatch, last_good: int) -> None:
    """Validation losses 100 nats worse after epoch ``last_good`` (the same in every run): the
    best epoch and the early stop fall where a test wants them."""
    real = training.validation_loss

    def validation_loss(model, x_val, epoch=0, mc_elbo=True):
        out = real(model, x_val, epoch, mc_elbo)
        return {**out, "val_loss": out["val_loss"] + 100.0 * (epoch > last_good)}

    monkeypatch.setattr(training, "validation_loss", validation_loss)


@pytest.fixture(scope="module")
def natural(digits, tmp_path_factory):
    """The same config run to 12 epochs from scratch, and run to 6 then continued to 12.

    On one torch thread, as every test (tests/conftest.py; this module-scoped fixture runs
    before that function-scoped one): a CPU float32 sum split over another number of threads
    rounds differently, so exactness holds at a fixed thread count (docs/BUDGETS.md)."""
    root = tmp_path_factory.mktemp("natural")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_trial(config(LONG), root / "scratch", data=digits)
        short = run_trial(config(SHORT), root / "continued", data=digits)
        short_rows = rows(root / "continued")
        continued_epochs = []
        run_trial(config(LONG), root / "continued", data=digits,
                  callback=lambda metrics, save: continued_epochs.append(metrics["epoch"]))
    finally:
        torch.set_num_threads(threads)
    return root, short, short_rows, continued_epochs


def test_six_epochs_continued_to_twelve_is_the_twelve_epoch_run(natural):
    root, _, _, continued_epochs = natural
    assert continued_epochs == list(range(SHORT + 1, LONG + 1))  # epochs 1-6 not trained again
    assert metrics_of(root / "scratch")["best_epoch"] > SHORT  # the best epoch is in part two
    assert_same_trial(root / "continued", root / "scratch")


def test_the_smaller_budget_result_is_kept_beside_the_larger(natural):
    root, short, short_rows, _ = natural
    kept = root / "continued" / BUDGETS_DIR / str(SHORT)
    assert metrics_of(kept) == short
    assert json.loads((kept / "config.json").read_text())["max_epochs"] == SHORT
    assert rows(kept) == short_rows == rows(root / "scratch")[:SHORT]
    assert sorted(p.name for p in kept.iterdir()) == sorted(BUDGET_FILES)
    assert not list((root / "continued" / BUDGETS_DIR).glob(".*"))  # no temporary folder
    assert json.loads((root / "continued" / "config.json").read_text())["max_epochs"] == LONG


def test_best_weights_from_the_first_part_and_early_stopping_carry_over(
        digits, tmp_path, monkeypatch):
    """Validation losses made worse from epoch 4 on (the same for both runs): the best epoch
    (3) lies in the first part and patience 5 stops the run at epoch 8, inside the second —
    so the continued run must carry the best weights and the count of bad epochs."""
    worse_after(monkeypatch, 3)
    run_trial(config(LONG, patience=5), tmp_path / "scratch", data=digits)
    run_trial(config(SHORT, patience=5), tmp_path / "continued", data=digits)
    run_trial(config(LONG, patience=5), tmp_path / "continued", data=digits)
    scratch = metrics_of(tmp_path / "scratch")
    assert (scratch["best_epoch"], scratch["epochs_run"], scratch["stopped_early"]) == (3, 8, True)
    assert_same_trial(tmp_path / "continued", tmp_path / "scratch")


def test_a_trial_that_stopped_early_trains_no_more_at_a_larger_budget(
        digits, tmp_path, monkeypatch):
    worse_after(monkeypatch, 2)
    short = run_trial(config(SHORT, patience=2), tmp_path, data=digits)
    assert (short["epochs_run"], short["stopped_early"]) == (4, True)
    monkeypatch.setattr(training, "_train_epoch", lambda *a, **k: pytest.fail("trained again"))
    longer = run_trial(config(LONG, patience=2), tmp_path, data=digits)
    assert metrics_of(tmp_path / BUDGETS_DIR / str(SHORT)) == short
    evaluated_again = {"eval_seconds"}  # the one wall-clock figure of the evaluation
    assert {k: v for k, v in longer.items() if k not in evaluated_again} \
        == {k: v for k, v in short.items() if k not in evaluated_again}


def test_a_new_folder_continues_from_another_trials_checkpoint(digits, natural, tmp_path):
    """A study's way (docs/BUDGETS.md): the larger budget's trial gets its own folder and
    continues from the smaller budget's checkpoint, which it only reads."""
    source = tmp_path / "short"
    run_trial(config(SHORT), source, data=digits)
    before = {p.name: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    run_trial(config(LONG), tmp_path / "long", data=digits,
              resume_from=source / CHECKPOINT_DIR)
    assert_same_trial(tmp_path / "long", natural[0] / "scratch")
    assert {p.name: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "long" / BUDGETS_DIR).exists()


def test_a_continuation_interrupted_resumes_to_the_same_result(digits, natural, tmp_path):
    class Interrupt(Exception):
        pass

    def crash_at_nine(metrics, save):
        if metrics["epoch"] == 9:
            raise Interrupt

    run_trial(config(SHORT), tmp_path, data=digits)
    with pytest.raises(Interrupt):
        run_trial(config(LONG), tmp_path, data=digits, callback=crash_at_nine)
    assert not (tmp_path / METRICS_FILE).exists() and (tmp_path / BUDGETS_DIR / "6").is_dir()
    run_trial(config(LONG), tmp_path, data=digits)
    assert_same_trial(tmp_path, natural[0] / "scratch")


def test_a_finished_folder_at_the_budget_asked_is_returned_as_it_is(natural, monkeypatch):
    root = natural[0]
    monkeypatch.setattr(training, "_train_epoch", lambda *a, **k: pytest.fail("trained again"))
    assert run_trial(config(LONG), root / "scratch") == metrics_of(root / "scratch")


def test_a_smaller_budget_or_another_setting_is_refused_in_one_line(natural, digits):
    root = natural[0]
    with pytest.raises(TrialFolderError, match=r"max_epochs: 12 -> 6 \(it may only grow\)"):
        run_trial(config(SHORT), root / "scratch", data=digits)
    with pytest.raises(TrialFolderError) as refused:
        run_trial(config(24, lr=1e-3), root / "scratch", data=digits)
    line = str(refused.value)
    assert "\n" not in line and "lr: 0.0005 -> 0.001" in line and "max_epochs" in line
    assert "max_epochs: 12" not in line  # growing is not a difference
    checkpoint = root / "scratch" / CHECKPOINT_DIR
    assert (checkpoint / CHECKPOINT_FILE).is_file()
    with pytest.raises(CheckpointMismatchError, match="it may only grow"):
        train(config(SHORT), digits, resume_from=checkpoint)
    with pytest.raises(CheckpointMismatchError, match=r"seed: 5 -> 6"):
        train(config(24, seed=6), digits, resume_from=checkpoint)
