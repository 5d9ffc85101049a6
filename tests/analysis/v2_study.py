"""A hand-made schema-version-2 study folder for the claims and collapse tests: trials with
KL estimators and collapse diagnostics, epochs with the diagnostics, per-image test LLs.

``ll(trial)`` is given by the test; every image i adds a fixed offset plus a small
deterministic wobble (so image-level intervals are not degenerate)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N_IMAGES = 20
N_EPOCHS = 4


def write_v2_study(root: Path, specs: list[dict], ll: Callable[[dict], float],
                   bound: Callable[[dict], float] | None = None) -> Path:
    """specs: dicts with kl_estimator, prior, M, K, pi (None: uniform), seed, collapsed."""
    results = root / "results"
    results.mkdir(parents=True)
    trials, epochs, images = [], [], []
    for i, s in enumerate(specs):
        key = f"k{i:03d}-{s['kl_estimator']}"
        value = ll(s)
        vae = s["prior"] == "standard"
        spread = None if vae else (0.001 if s.get("collapsed") else 0.9)
        trials.append({
            "study": "v2", "trial_key": key, "state": "COMPLETED", "dataset": "fashion_mnist",
            "arch": "mlp", "prior": s["prior"], "likelihood": "bernoulli",
            "kl_estimator": s["kl_estimator"], "M": s["M"],
            "pi": s.get("pi") or [1.0 / s["M"]] * s["M"], "K": 1 if vae else s["K"],
            "latent_dim": 40, "seed": s["seed"], "max_epochs": N_EPOCHS, "warmup_epochs": 1,
            "epochs_run": N_EPOCHS, "best_epoch": N_EPOCHS, "test_ll": value,
            "test_elbo_bound": bound(s) if bound else value - 3.0,
            "test_kl": 20.0 if vae else (14.0 if s.get("collapsed") else 90.0),
            "test_kl_lse": 20.0 if vae else (14.0 if s.get("collapsed") else 13.0),
            "test_kl_mc": 19.9 if vae else (13.8 if s.get("collapsed") else 12.6),
            "spread_ratio": spread, "collapsed": None if vae else bool(s.get("collapsed")),
            "resp_perplexity": None if vae else (1.0 if s.get("collapsed") else 0.1),
            "trial_dir": f"trials/{key}", "schema_version": 2,
        })
        for e in range(1, N_EPOCHS + 1):
            epochs.append({
                "study": "v2", "trial_key": key, "epoch": e, "beta": 1.0, "val_loss": 100.0 - e,
                "spread_ratio": None if vae else (spread if e > 1 else 0.5),
                "resp_perplexity": None if vae else (1.0 if s.get("collapsed") else 0.1),
                "members_used": None if vae else 0.9,
                "bound_gap": None if vae else (0.0 if s.get("collapsed") else 50.0),
                "lse_gap": None if vae else 0.3,
            })
        for img in range(N_IMAGES):
            wobble = 0.05 * (((img * 7 + i * 3) % 5) - 2)
            images.append({"study": "v2", "trial_key": key, "image": img,
                           "log_likelihood": value + (img - N_IMAGES / 2) + wobble})
    pq.write_table(pa.Table.from_pylist(trials), results / "trials.parquet")
    pq.write_table(pa.Table.from_pylist(epochs), results / "epochs.parquet")
    pq.write_table(pa.Table.from_pylist(images), results / "test_ll.parquet")
    return root


def grid(estimators=("greedy",), Ms=(1, 2, 3), Ks=(100, 500), seeds=(0, 1, 2),
         collapsed=("greedy",)) -> list[dict]:
    specs = []
    for est in estimators:
        for seed in seeds:
            specs.append(dict(kl_estimator=est, prior="standard", M=1, K=None, seed=seed))
            for m in Ms:
                for k in Ks:
                    specs.append(dict(kl_estimator=est, prior="pseudo_mixture", M=m, K=k,
                                      seed=seed, collapsed=est in collapsed))
    return specs


def two_way_variance(delta: np.ndarray) -> tuple[float, float]:
    """var of the grand mean of a seeds × images table (random seeds and images) and its
    Satterthwaite df, by the textbook sums of squares, one cell at a time (the test-image
    part truncated at 0: then the t over seeds, n − 1 df)."""
    n, big_n = delta.shape
    grand = sum(sum(r) for r in delta) / (n * big_n)
    seed_means = [sum(delta[s]) / big_n for s in range(n)]
    image_means = [sum(delta[s][i] for s in range(n)) / n for i in range(big_n)]
    ss_seed = big_n * sum((m - grand) ** 2 for m in seed_means)
    ss_image = n * sum((m - grand) ** 2 for m in image_means)
    ss_res = sum((delta[s][i] - seed_means[s] - image_means[i] + grand) ** 2
                 for s in range(n) for i in range(big_n))
    ms = [ss_seed / (n - 1), ss_image / (big_n - 1), ss_res / ((n - 1) * (big_n - 1))]
    dfs = [n - 1, big_n - 1, (n - 1) * (big_n - 1)]
    if ms[1] <= ms[2]:
        return ms[0] / (n * big_n), n - 1.0
    var = (ms[0] + ms[1] - ms[2]) / (n * big_n)
    return var, var**2 / sum((m / (n * big_n)) ** 2 / f for m, f in zip(ms, dfs, strict=True))
