"""A simulator of studies, to calibrate the claims' statistics (tests/analysis/test_calibration.py).

A simulated study has the shape of a real grid (`GRIDS`: ``reproduce`` = the VAE + M ∈ {1, 2,
3} × K ∈ {10, 100, 500} × estimators greedy, lse, mc; ``figure4`` = M = 2 with the paper's 5 π
and M = 3 with its 6 π at K = 500 × greedy, lse; ``table1`` = mlp, cnn, pixel × (VAE + M ∈
{1, 2, 3} × K ∈ {100, 500, 1000})) crossed with the seeds, and a trial's IS LL is

    LL = −250 + effect(settings) + b_seed + e_run + ē_image + ē_IS

with b_seed ~ N(0, ``block_sd``) shared by every trial of a seed (the same data order and
initial draws), e_run ~ N(0, ``seed_sd``) the training run's own deviation, and the means over
``n_images`` test images of the per-image model noise (sd ``image_sd``) and the importance-
sampling noise (sd ``is_sd``). ``effect`` is the caller's function of a trial's settings (the
true effects: zero for a null study). The paper's bound of a trial is ``bound_slope`` · LL +
N(0, ``bound_sd``) (slope 0: unrelated to LL). A trial is pruned with probability ``prune``
(no test metrics); a pseudo-mixture trial is collapsed with probability ``collapse_p``.

Everything is NumPy and vectorised over ``n_studies`` (`Simulation.ll`, ``bound``, ``found``,
``collapsed``: (n_studies, n_trials)); `Simulation.write` writes study i as a study folder
(results/trials.parquet and test_ll.parquet with per-image rows whose mean is the trial's LL)
so the same study can be read back through `analysis.load` and `analysis.claims.prep`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from search_spaces.simplex import figure4_pis

Effect = Callable[[dict[str, Any]], float]


def _models(ms: tuple[int, ...], ks: tuple[int, ...], vae: bool) -> list[dict[str, Any]]:
    out = [dict(prior="standard", M=1, pi=[1.0], K=1)] if vae else []
    return out + [dict(prior="pseudo_mixture", M=m, pi=[1.0 / m] * m, K=k) for m in ms
                  for k in ks]


GRIDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], list[dict[str, Any]]]] = {
    "reproduce": (("mlp",), ("greedy", "lse", "mc"), _models((1, 2, 3), (10, 100, 500), True)),
    "figure4": (("mlp",), ("greedy", "lse"),
                [dict(prior="pseudo_mixture", M=m, pi=pi, K=500) for m in (2, 3)
                 for pi in figure4_pis(m)]),
    "table1": (("mlp", "cnn", "pixel"), ("greedy",), _models((1, 2, 3), (100, 500, 1000), True)),
}
FIXED = dict(dataset="fashion_mnist", likelihood="bernoulli", latent_dim=40, hidden_dim=300,
             image_shape=[28, 28], pseudo_init="random", pixel_layers=4, pixel_channels=32,
             lr=1e-3, batch_size=100, max_epochs=12, warmup_epochs=4, patience=12,
             is_samples=500, max_train_examples=6000, max_test_examples=500, precision="fp32")


def grid_settings(grid: str, seeds: int) -> list[dict[str, Any]]:
    """The trials of ``grid`` with ``seeds`` seeds, each a dict of settings and trial_key."""
    archs, estimators, models = GRIDS[grid]
    out = []
    for arch in archs:
        for est in estimators:
            for model in models:
                for seed in range(seeds):
                    s = {**FIXED, "arch": arch, "kl_estimator": est, **model, "seed": seed}
                    pi = "-".join(f"{p:.3g}" for p in s["pi"])
                    s["trial_key"] = (f"{arch}-{est}-{s['prior'][:3]}-M{s['M']}-K{s['K']}-"
                                      f"pi{pi}-s{seed}")
                    out.append(s)
    return out


@dataclass
class Simulation:
    """``n_studies`` simulated studies of one grid (see the module docstring)."""

    grid: str
    seeds: int
    n_studies: int
    effect: Effect = field(default=lambda s: 0.0)
    seed_sd: float = 0.15
    block_sd: float = 0.3
    image_sd: float = 1.5
    is_sd: float = 0.5
    n_images: int = 500
    prune: float = 0.0
    bound_slope: float = 0.0
    bound_sd: float = 1.0
    collapse_p: float = 0.0
    rng_seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.rng_seed)
        self.trials = grid_settings(self.grid, self.seeds)
        n, t = self.n_studies, len(self.trials)
        seed_of = np.array([s["seed"] for s in self.trials])
        mean = -250.0 + np.array([self.effect(s) for s in self.trials])
        block = rng.normal(0.0, self.block_sd, (n, self.seeds))[:, seed_of]
        noise_sd = np.sqrt(self.seed_sd**2 + (self.image_sd**2 + self.is_sd**2) / self.n_images)
        self.ll = mean + block + rng.normal(0.0, noise_sd, (n, t))
        self.bound = self.bound_slope * self.ll + rng.normal(0.0, self.bound_sd, (n, t))
        self.found = rng.random((n, t)) >= self.prune
        pm = np.array([s["prior"] == "pseudo_mixture" for s in self.trials])
        self.collapsed = (rng.random((n, t)) < self.collapse_p) & pm
        self._rng = rng

    @property
    def keys(self) -> list[str]:
        return [s["trial_key"] for s in self.trials]

    def write(self, root: Path, i: int) -> Path:
        """Study ``i`` as a study folder under ``root`` (trials.parquet, test_ll.parquet)."""
        results = root / "results"
        results.mkdir(parents=True, exist_ok=True)
        rows, images = [], []
        for j, s in enumerate(self.trials):
            ok = bool(self.found[i, j])
            vae = s["prior"] == "standard"
            collapsed = bool(self.collapsed[i, j])
            rows.append({
                "study": "sim", **{k: v for k, v in s.items()},
                "state": "COMPLETED" if ok else "PRUNED",
                "test_ll": float(self.ll[i, j]) if ok else None,
                "test_elbo_bound": float(self.bound[i, j]) if ok else None,
                "best_epoch": s["max_epochs"] if ok else None,
                "spread_ratio": None if vae or not ok else (0.001 if collapsed else 0.9),
                "resp_perplexity": None if vae or not ok else (1.0 if collapsed else 0.1),
                "trial_dir": f"trials/{s['trial_key']}", "schema_version": 2,
            })
            if ok:
                per_image = self._rng.normal(0.0, np.hypot(self.image_sd, self.is_sd),
                                             self.n_images)
                per_image += self.ll[i, j] - per_image.mean()
                images += [{"study": "sim", "trial_key": s["trial_key"], "image": k,
                            "log_likelihood": float(v)} for k, v in enumerate(per_image)]
        pq.write_table(pa.Table.from_pylist(rows), results / "trials.parquet")
        if images:
            pq.write_table(pa.Table.from_pylist(images), results / "test_ll.parquet")
        return root


def claim_codes(sim: Simulation, frame: Any, margin: float = 1.0,
                rank_threshold: float = 0.5) -> dict[tuple[str, str], np.ndarray]:
    """Every claim's verdict code (`analysis.claims_stats`) per simulated study, by the same
    design (`analysis.claims_design`, built from ``frame`` — study 0 read back through
    `analysis.load`, whose rows are in `Simulation.trials` order) and the same statistics
    as `analysis.claims.prep`: {(claim, scope): codes (n_studies,)}."""
    from analysis import claims_design as cd
    from analysis import claims_stats as cs
    from analysis.claims import REQUIRED

    families: dict[tuple[str, str], list[Any]] = {}
    for c in cd.design(frame):
        families.setdefault((c.claim, c.scope), []).append(c)
    out = {}
    for (claim, scope), family in families.items():
        width = max(len(c.seeds) for c in family)
        d = np.full((sim.n_studies, len(family), width), np.nan)
        for i, c in enumerate(family):
            d[:, i, : len(c.seeds)] = c.seed_differences(sim.ll, sim.found)
        res = (cs.equivalence_family(d, margin) if claim == "c" else
               cs.one_sided_family(d, np.array([c.expected for c in family])))
        out[(claim, scope)] = cs.partial_claim(res["claim"], len(family),
                                               REQUIRED.get(claim, 0))
    for rd in cd.rank_design(frame):
        idx = np.where(rd.rows >= 0, rd.rows, 0)
        present = (rd.rows >= 0) & sim.found[:, idx]
        x = np.where(present, sim.bound[:, idx], np.nan).swapaxes(1, 2)  # (studies, seeds, models)
        y = np.where(present, sim.ll[:, idx], np.nan).swapaxes(1, 2)
        out[("d", rd.scope)] = cs.rank_agreement(cs.spearman_rows(x, y), rank_threshold)["claim"]
    return out
