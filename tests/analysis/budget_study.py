"""A hand-made study holding one or several budgets, as ``gmmpvae extend`` leaves it
(docs/BUDGETS.md): every configuration once per ``max_epochs``, under its own trial key; the
larger budget's epochs.parquet holds every epoch 1 … N, its first epochs the same numbers as the
smaller budget's.

The test gives, per trial spec (v2_study.grid's dicts) and epoch, the validation MC ELBO
``elbo(spec, epoch)``, the validation loss ``loss(spec, epoch)`` (default: falling every epoch)
and the spread ratio ``spread(spec, epoch)``; and the test IS LL ``ll(spec, budget)``. A
trial stops early as `models.training.EarlyStopping` would (``patience``), so its epochs end
at its best epoch + patience and its best epoch is its lowest validation loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

Of = Callable[[dict, int], float]
N_IMAGES = 6
WARMUP = 1


def _falling(spec: dict, epoch: int) -> float:
    return 300.0 - 10.0 * epoch


def _spread(spec: dict, epoch: int) -> float | None:
    return None if spec["prior"] == "standard" else 0.5


def run(spec: dict, budget: int, loss: Of, patience: int) -> tuple[list[int], int]:
    """The epochs a trial runs at ``budget`` and its best epoch (EarlyStopping's rule)."""
    best, best_loss, bad, epochs = 0, float("inf"), 0, []
    for e in range(1, budget + 1):
        epochs.append(e)
        if loss(spec, e) < best_loss:
            best, best_loss, bad = e, loss(spec, e), 0
        else:
            bad += 1
        if bad >= patience:
            break
    return epochs, best


def write_budget_study(root: Path, specs: list[dict], elbo: Of, ll: Of,
                       budgets: Sequence[int] = (6,), loss: Of = _falling,
                       spread: Callable[[dict, int], float | None] = _spread,
                       patience: int = 100, dataset: str = "fashion_mnist") -> Path:
    results = root / "results"
    results.mkdir(parents=True)
    trials, epochs, images = [], [], []
    for budget in budgets:
        for i, s in enumerate(specs):
            key = f"k{i:03d}-{s['kl_estimator']}-e{budget}"
            vae = s["prior"] == "standard"
            ran, best = run(s, budget, loss, patience)
            value = ll(s, budget)
            trials.append({
                "study": "b", "trial_key": key, "state": "COMPLETED", "dataset": dataset,
                "arch": "mlp", "prior": s["prior"], "likelihood": "bernoulli",
                "kl_estimator": s["kl_estimator"], "M": s["M"],
                "pi": s.get("pi") or [1.0 / s["M"]] * s["M"], "K": 1 if vae else s["K"],
                "latent_dim": 40, "seed": s["seed"], "max_epochs": budget,
                "warmup_epochs": WARMUP, "epochs_run": len(ran), "best_epoch": best,
                "test_ll": value, "test_elbo_bound": value - 3.0,
                "spread_ratio": spread(s, best),
                "resp_perplexity": None if vae else (1.0 if s.get("collapsed") else 0.1),
                "trial_dir": f"trials/{key}", "schema_version": 3,
            })
            for e in ran:
                epochs.append({
                    "study": "b", "trial_key": key, "epoch": e, "beta": 1.0,
                    "val_loss": loss(s, e), "val_elbo_mc": elbo(s, e),
                    "spread_ratio": spread(s, e),
                    "resp_perplexity": None if vae else (1.0 if s.get("collapsed") else 0.1),
                })
            for img in range(N_IMAGES):
                images.append({"study": "b", "trial_key": key, "image": img,
                               "log_likelihood": value + (img - N_IMAGES / 2)
                               + 0.01 * ((img * 7 + i * 3) % 5)})
    pq.write_table(pa.Table.from_pylist(trials), results / "trials.parquet")
    pq.write_table(pa.Table.from_pylist(epochs), results / "epochs.parquet")
    pq.write_table(pa.Table.from_pylist(images), results / "test_ll.parquet")
    return root
