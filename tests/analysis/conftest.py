"""Hand-made study folders for the analysis tests.

``alpha`` is a current-schema study on MNIST with a VAE, Mix1–3 at K = 100 and 500, skewed π
for M = 2 and 3, one cnn model with a single seed, one ERROR trial, one RUNNING and one PENDING
trial, PNGs in the trial folders of the mlp models' seed 0, and one seed of the VAE that stopped
early (5 epochs instead of 6). ``beta`` is an older-schema study (several columns missing) with
the same study name. Metric values follow ``metrics()`` so tests can recompute them by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

BASE_LL = {("standard", 1): -95.0, ("pseudo_mixture", 1): -90.0,
           ("pseudo_mixture", 2): -87.0, ("pseudo_mixture", 3): -85.0}
SEED_SHIFT = {0: 0.0, 1: -0.6, 2: 0.3}
OFFSETS = (-1.0, -0.5, 0.5, 1.0)  # per-image LL around the trial's mean
N_EPOCHS = 6
WARMUP = 2

TRIALS_SCHEMA = pa.schema([
    ("study", pa.string()), ("trial_key", pa.string()), ("state", pa.string()),
    ("error", pa.string()), ("dataset", pa.string()), ("arch", pa.string()),
    ("prior", pa.string()), ("likelihood", pa.string()), ("kl_estimator", pa.string()),
    ("M", pa.int64()), ("pi", pa.list_(pa.float64())), ("K", pa.int64()),
    ("latent_dim", pa.int64()), ("seed", pa.int64()), ("max_epochs", pa.int64()),
    ("warmup_epochs", pa.int64()), ("epochs_run", pa.int64()), ("best_epoch", pa.int64()),
    ("test_re", pa.float64()), ("test_kl", pa.float64()), ("test_kl_mc", pa.float64()),
    ("test_elbo_bound", pa.float64()), ("test_elbo_mc", pa.float64()), ("test_ll", pa.float64()),
    ("is_samples", pa.int64()), ("trial_dir", pa.string()), ("schema_version", pa.int64()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("versions", pa.string()),
])


def metrics(prior: str, M: int, K: int | None, arch: str, pi: list[float] | None,
            seed: int) -> dict[str, float]:
    """Deterministic test metrics of one trial (nats per image)."""
    ll = BASE_LL[(prior, M)] + SEED_SHIFT[seed]
    ll += 0.5 if K == 500 else 0.0
    ll += 3.0 if arch == "cnn" else 0.0
    ll -= 1.0 if pi is not None and max(pi) - min(pi) > 1e-6 else 0.0
    gap = 2.0 + 0.8 * M + 0.3 * seed + (1.5 if K == 500 else 0.0)  # IS LL − bound
    re = 60.0 - 2.0 * M + 0.2 * seed
    return {
        "test_ll": ll,
        "test_elbo_bound": ll - gap,
        "test_elbo_mc": ll - gap / 2,
        "test_re": re,
        "test_kl": -(ll - gap) - re,  # bound = −(RE + U)
        "test_kl_mc": -(ll - gap / 2) - re,
    }


def alpha_specs() -> list[dict]:
    """The trials of study alpha: (arch, prior, M, K, pi, seed, state)."""
    specs = []

    def add(arch, prior, M, K, pi, seeds, state="COMPLETED"):
        for seed in seeds:
            specs.append(dict(arch=arch, prior=prior, M=M, K=K, pi=pi, seed=seed, state=state))

    add("mlp", "standard", 1, 500, [1.0], [0, 1, 2])
    for K in (100, 500):
        add("mlp", "pseudo_mixture", 1, K, [1.0], [0, 1])
        add("mlp", "pseudo_mixture", 2, K, [0.5, 0.5], [0, 1])
    add("mlp", "pseudo_mixture", 2, 100, [0.7, 0.3], [0, 1])
    add("mlp", "pseudo_mixture", 3, 100, [1 / 3] * 3, [0, 1])
    add("mlp", "pseudo_mixture", 3, 100, [0.5, 0.3, 0.2], [0, 1])
    add("mlp", "pseudo_mixture", 3, 500, [1 / 3] * 3, [0], state="ERROR")
    add("mlp", "pseudo_mixture", 3, 500, [1 / 3] * 3, [1], state="RUNNING")
    add("cnn", "pseudo_mixture", 1, 100, [1.0], [0])
    add("cnn", "pseudo_mixture", 2, 100, [0.5, 0.5], [0], state="PENDING")
    for i, s in enumerate(specs):
        s["trial_key"] = f"t{i:03d}"
    return specs


def _png(path: Path, value: float) -> None:
    import matplotlib.image

    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, np.full((8, 6), value), cmap="gray", vmin=0, vmax=1)


def write_study(root: Path, name: str, specs: list[dict], *, old_schema: bool = False) -> Path:
    """Write results/{trials,epochs,test_ll}.parquet (and trial PNGs) for ``specs``."""
    results = root / "results"
    results.mkdir(parents=True)
    trials, epochs, images = [], [], []
    for s in specs:
        done = s["state"] == "COMPLETED"
        m = metrics(s["prior"], s["M"], s["K"], s["arch"], s["pi"], s["seed"]) if done else {}
        n_epochs = {"COMPLETED": N_EPOCHS, "ERROR": 3, "RUNNING": 2}.get(s["state"], 0)
        if done and s["prior"] == "standard" and s["seed"] == 2:
            n_epochs = N_EPOCHS - 1  # stopped early
        row = {
            "study": name, "trial_key": s["trial_key"], "state": s["state"],
            "error": ("Traceback (most recent call last):\n  ...\n"
                      "NonFiniteLossError: loss is nan at epoch 3, batch 7")
            if s["state"] == "ERROR" else None,
            "dataset": "mnist", "arch": s["arch"], "prior": s["prior"],
            "likelihood": "bernoulli", "kl_estimator": "greedy", "M": s["M"], "pi": s["pi"],
            "K": s["K"], "latent_dim": 40, "seed": s["seed"], "max_epochs": N_EPOCHS,
            "warmup_epochs": WARMUP, "epochs_run": n_epochs, "best_epoch": n_epochs or None,
            **{k: m.get(k) for k in ("test_re", "test_kl", "test_kl_mc", "test_elbo_bound",
                                     "test_elbo_mc", "test_ll")},
            "is_samples": 100, "trial_dir": f"trials/{s['trial_key']}", "schema_version": 1,
            "started_at": None, "versions": "{}",
        }
        trials.append(row)
        for e in range(1, n_epochs + 1):
            epochs.append({
                "study": name, "trial_key": s["trial_key"], "epoch": e,
                "beta": min(1.0, e / WARMUP), "train_loss": 100.0 - e, "train_re": 60.0,
                "train_kl": 40.0 - e,
                "val_loss": 100.0 + 10.0 / e - s["M"] + 0.1 * s["seed"] + (s["K"] or 0) / 1000,
                "val_re": 60.0, "val_kl": 40.0, "seconds": 0.5,
            })
        if done:
            for i, off in enumerate(OFFSETS):
                images.append({
                    "study": name, "trial_key": s["trial_key"], "image": i,
                    "log_likelihood": m["test_ll"] + off, "elbo_bound": m["test_elbo_bound"] + off,
                    "elbo_mc": m["test_elbo_mc"] + off, "re": m["test_re"],
                    "kl_bound": m["test_kl"],
                })
            if s["arch"] == "mlp" and s["seed"] == 0 and not old_schema:
                _png(root / row["trial_dir"] / "reconstructions.png", 0.2)
                _png(root / row["trial_dir"] / "samples.png", 0.8)
    table = pa.Table.from_pylist(trials, schema=TRIALS_SCHEMA)
    epochs_table = pa.Table.from_pylist(epochs)
    images_table = pa.Table.from_pylist(images)
    if old_schema:
        table = table.drop_columns(["test_elbo_mc", "test_kl_mc", "kl_estimator", "pi",
                                    "latent_dim", "schema_version", "trial_dir", "is_samples"])
        table = table.set_column(table.schema.get_field_index("M"), "M",
                                 table["M"].cast(pa.int32()))
        epochs_table = epochs_table.drop_columns(["beta"])
        images_table = images_table.drop_columns(["elbo_mc"])
    pq.write_table(table, results / "trials.parquet")
    pq.write_table(epochs_table, results / "epochs.parquet")
    pq.write_table(images_table, results / "test_ll.parquet")
    return root


def beta_specs() -> list[dict]:
    specs = []
    for prior, M, K in (("standard", 1, 500), ("pseudo_mixture", 1, 500)):
        for seed in (0, 1):
            specs.append(dict(arch="mlp", prior=prior, M=M, K=K, pi=None, seed=seed,
                              state="COMPLETED"))
    for i, s in enumerate(specs):
        s["trial_key"] = f"b{i:03d}"
    return specs


@pytest.fixture(scope="session")
def specs() -> list[dict]:
    """The trials of study alpha (with their trial keys)."""
    return alpha_specs()


@pytest.fixture(scope="session")
def trial_metrics():
    """``metrics(prior, M, K, arch, pi, seed)``: the values written for a completed trial."""
    return metrics


@pytest.fixture(scope="session")
def alpha(tmp_path_factory) -> Path:
    return write_study(tmp_path_factory.mktemp("studies") / "alpha", "alpha", alpha_specs())


@pytest.fixture(scope="session")
def beta(tmp_path_factory) -> Path:
    """An older schema, same study name as alpha (labels fall back to folder names)."""
    return write_study(tmp_path_factory.mktemp("studies") / "beta_laptop", "alpha", beta_specs(),
                       old_schema=True)


@pytest.fixture(scope="session")
def frames(alpha):
    from analysis.load import load

    return load([alpha])


@pytest.fixture(scope="session")
def merged(alpha, beta):
    from analysis.load import load

    return load([alpha, beta])
