"""A simulator of studies, to calibrate the claims' statistics (tests/analysis/test_calibration.py).

A simulated study has the shape of a real grid (`GRIDS`: ``reproduce`` = the VAE + M ∈ {1, 2,
3} × K ∈ {10, 100, 500} × estimators greedy, lse, mc; ``figure4`` = M = 2 with the paper's 5 π
and M = 3 with its 6 π at K = 500 × greedy, lse; ``table1`` = mlp, cnn, pixel × (VAE + M ∈
{1, 2, 3} × K ∈ {100, 500, 1000})) crossed with the seeds. Every trial t (configuration c, seed
s) is scored on the same test images i, with per-image IS LL

    ll_ti = −250 + effect(settings) + b_s + g_t + u_ci + v_ti

- b_s ~ N(0, ``block_sd``): the seed's offset, shared by every trial of the seed (the same data
  order and initial draws); it cancels in every paired difference;
- g_t ~ N(0, ``inter_sd``): the **seed × setting interaction**, the training run's own
  deviation — the error term of a paired difference. ``inter_sd`` may be a function of the
  settings (**heteroscedastic**: some configurations train more erratically than others);
- u_ci ~ N(0, ``image_sd``): the configuration's own per-image strengths, shared by its seeds
  (so a paired difference keeps a **test-image** effect that more seeds do not average away);
- v_ti ~ N(0, ``run_image_sd``): per-run, per-image noise, the **IS noise** included.

A trial's IS LL is the mean over the images. To stay small, ``n_sim_images`` images are
simulated for a test set of ``n_images``, with the per-image sds scaled by
√(n_sim_images / n_images), so that image means and the test-image part of every standard error
have their variance at ``n_images``. ``effect`` is the caller's function of a trial's settings
(zero for a null study). The paper's bound of a trial is ``bound_slope`` · LL + N(0,
``bound_sd``). A trial is pruned with probability ``prune`` (no test metrics); a pseudo-mixture
trial is collapsed with probability ``collapse_p``.

**Default noise: what our studies measured.** The per-seed sd of the paired differences,
backed out of the intervals that reproduce_fashion and figure4_fashion (run from main,
2026-12-01/02, mlp, 4,000–6,000 training images, 10–12 epochs, 3 seeds; README) printed: claim
(c) 0.34–0.61 (one cell per seed), (b) 0.19–0.28 (three cells averaged), (e) 0.11–0.17 (nine
cells). With sd(d_s)² = 2(g² + v²/N)/cells these give a per-trial interaction sd g of
0.21–0.42 for every claim; `INTER_SD` = 0.30 is their middle, and the calibration also runs at
the upper end with heteroscedastic settings. The per-image terms come from the per-image
values of reproduce_fashion run from a fresh clone (2026-12-07, the `greedy` trials): the sd
over images of a paired difference is 3.0–3.4 nats (`RUN_IMAGE_SD` = 3.2/√2), the sd of the
test-image effect of a paired difference 0–1.7 nats between pseudo-mixture models and 1.7–2.7
against the VAE (`IMAGE_SD` = 1.0 per configuration, 1.4 for a difference).

Everything is NumPy and vectorised over ``n_studies`` (`Simulation.ll`, ``bound``, ``found``,
``collapsed``: (n_studies, n_trials); ``images``: (n_studies, n_trials, n_sim_images));
`Simulation.write` writes study i as a study folder (results/trials.parquet and test_ll.parquet
with the per-image rows) so the same study can be read back through `analysis.load` and
`analysis.claims.prep`.
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
INTER_SD = 0.30  # per-trial seed × setting sd, nats (module docstring: measured 0.21–0.42)
INTER_SD_HIGH = 0.42  # the upper end of that range
IMAGE_SD = 1.0  # per-configuration per-image effect sd, nats
RUN_IMAGE_SD = 3.2 / 2**0.5  # per-trial per-image sd (IS noise included), nats


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
    inter_sd: float | Callable[[dict[str, Any]], float] = INTER_SD
    block_sd: float = 0.3
    image_sd: float = IMAGE_SD
    run_image_sd: float = RUN_IMAGE_SD
    n_images: int = 500
    n_sim_images: int = 20
    prune: float = 0.0
    bound_slope: float = 0.0
    bound_sd: float = 1.0
    collapse_p: float = 0.0
    rng_seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.rng_seed)
        self.trials = grid_settings(self.grid, self.seeds)
        n, t, m = self.n_studies, len(self.trials), self.n_sim_images
        seed_of = np.array([s["seed"] for s in self.trials])
        configs = [s["trial_key"].rsplit("-s", 1)[0] for s in self.trials]
        config_of = np.unique(configs, return_inverse=True)[1]
        mean = -250.0 + np.array([self.effect(s) for s in self.trials])
        inter = np.array([self.inter_sd(s) if callable(self.inter_sd) else self.inter_sd
                          for s in self.trials])
        scale = np.sqrt(m / self.n_images)
        trial = (mean + rng.normal(0.0, self.block_sd, (n, self.seeds))[:, seed_of]
                 + rng.normal(0.0, 1.0, (n, t)) * inter)
        u = rng.normal(0.0, self.image_sd * scale, (n, config_of.max() + 1, m))[:, config_of]
        self.images = (trial[..., None] + u
                       + rng.normal(0.0, self.run_image_sd * scale, (n, t, m)))
        self.ll = self.images.mean(-1)
        self.bound = self.bound_slope * self.ll + rng.normal(0.0, self.bound_sd, (n, t))
        self.found = rng.random((n, t)) >= self.prune
        pm = np.array([s["prior"] == "pseudo_mixture" for s in self.trials])
        self.collapsed = (rng.random((n, t)) < self.collapse_p) & pm

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
                images += [{"study": "sim", "trial_key": s["trial_key"], "image": k,
                            "log_likelihood": float(v)} for k, v in enumerate(self.images[i, j])]
        pq.write_table(pa.Table.from_pylist(rows), results / "trials.parquet")
        if images:
            pq.write_table(pa.Table.from_pylist(images), results / "test_ll.parquet")
        return root


def claim_codes(sim: Simulation, frame: Any, margin: float = 1.0,
                rank_threshold: float = 0.5, smallest_effect: float | None = None
                ) -> dict[tuple[str, str], np.ndarray]:
    """Every claim's verdict code (`analysis.claims_stats`) per simulated study, by the same
    design (`analysis.claims_design`, built from ``frame`` — study 0 read back through
    `analysis.load`, whose rows are in `Simulation.trials` order) and the same statistics
    (`analysis.claims_rows.family_arrays`: the t over seeds plus the test-image part) as
    `analysis.claims.prep`: {(claim, scope): codes (n_studies,)}; with ``smallest_effect`` the
    minimum-effect codes of claims a, b, g, g* too, under ("min " + claim, scope): MIN_EXCLUDED
    where any comparison's gain of ``smallest_effect`` is excluded."""
    from analysis import claims_design as cd
    from analysis import claims_rows as cr
    from analysis import claims_stats as cs
    from analysis.claims import REQUIRED

    families: dict[tuple[str, str], list[Any]] = {}
    for c in cd.design(frame):
        families.setdefault((c.claim, c.scope), []).append(c)
    out = {}
    for (claim, scope), family in families.items():
        d, comp = cr.family_arrays(family, sim.ll, sim.found, sim.images)
        image = (comp["var_image"], comp["df"])
        with_min = smallest_effect is not None and claim in cr.MIN_EFFECT_CLAIMS
        res = (cs.equivalence_family(d, margin, image) if claim == "c" else
               cs.one_sided_family(d, np.array([c.expected for c in family]), image,
                                   np.full(len(family), smallest_effect) if with_min else None))
        out[(claim, scope)] = cs.partial_claim(res["claim"], len(family),
                                               REQUIRED.get(claim, 0))
        if with_min:
            out[("min " + claim, scope)] = np.where(
                (res["min_code"] == cs.MIN_EXCLUDED).any(-1), cs.MIN_EXCLUDED, cs.MIN_NONE)
    for rd in cd.rank_design(frame):
        idx = np.where(rd.rows >= 0, rd.rows, 0)
        present = (rd.rows >= 0) & sim.found[:, idx]
        x = np.where(present, sim.bound[:, idx], np.nan).swapaxes(1, 2)  # (studies, seeds, models)
        y = np.where(present, sim.ll[:, idx], np.nan).swapaxes(1, 2)
        out[(rd.claim, rd.scope)] = cs.rank_agreement(cs.spearman_rows(x, y),
                                                      rank_threshold)["claim"]
    return out
