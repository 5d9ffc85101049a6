"""The design of the claims: which trials are compared with which, before any result is read.

A comparison "A − B" pairs a trial of side A with a trial of side B that equals it on **every
setting** (`SETTINGS`: the ModelConfig / TrainConfig columns of trials.parquet, and the study)
except the ``compared`` ones, the seed included — so a pair differs only in what is compared.
Side B must have one trial per match key, and so must side A, except over the ``a_many``
settings (the Mix1 − VAE step: the VAE has no K, so each VAE trial is the reference of Mix1 at
every K of its seed, and those differences are averaged within the seed). A join that is not
one-to-one is a `DesignError` naming the rows (a repeated configuration of an open search, a
setting missing from `SETTINGS`).

The pairs are built from *every* trial of the study — completed, pruned, failed and planned
but not started (``plan.parquet``) — so a comparison knows its expected pairs; the found ones
are those whose two trials completed with an IS LL. A seed counts only when all its expected
pairs are found (its difference is then the mean over the same cells as every other seed's);
the trials of the others are named as missing with their state.

Settings left out of the match: ``device_requested``, ``data_dir``, ``eval_memory_mb`` and
``compile`` (where a trial ran, where its files are, the evaluation's memory chunking and
compiling the step do not change the trial — `models.training.RESUME_EXEMPT`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from analysis.load import COMPLETED

SETTINGS = (
    "study", "dataset", "arch", "prior", "likelihood", "kl_estimator", "M", "pi_key", "K",
    "latent_dim", "hidden_dim", "shape_key", "pseudo_init", "pixel_layers", "pixel_channels",
    "lr", "batch_size", "max_epochs", "warmup_epochs", "patience", "is_samples",
    "max_train_examples", "max_test_examples", "precision",
)
LIST_SETTINGS = {"pi_key": "pi", "shape_key": "image_shape"}  # lists compared as text
# The budget a trial was trained and scored at: part of every comparison's scope, so a study
# holding several budgets gets one verdict per budget (pairs never cross budgets: these are
# also SETTINGS). ``epochs_run`` varies within a budget (early stopping) and is reported.
BUDGET = ("max_epochs", "max_train_examples", "warmup_epochs", "is_samples", "max_test_examples")
# The paper's protocol (Guo et al. 2020, following VampPrior): KL warm-up over 200 epochs, up
# to 5,000 epochs. A budget whose max_epochs is below the paper's warm-up is "early training":
# its models are not near the converged ones the paper reports.
PAPER_WARMUP_EPOCHS = 200


class DesignError(ValueError):
    """A comparison whose join is not one-to-one (one line, naming the rows)."""


def budget_expr() -> pl.Expr:
    """The budget as one label, e.g. "max 10 epochs, 4000 train images, warm-up 3, IS 500,
    500 test images" ("all" where a size is unset), with ", early training" when max_epochs is
    below `PAPER_WARMUP_EPOCHS`."""
    def size(col: str) -> pl.Expr:
        return pl.col(col).cast(pl.String).fill_null("all")

    return pl.concat_str(
        pl.lit("max "), size("max_epochs"), pl.lit(" epochs, "), size("max_train_examples"),
        pl.lit(" train images, warm-up "), size("warmup_epochs"), pl.lit(", IS "),
        size("is_samples"), pl.lit(", "), size("max_test_examples"), pl.lit(" test images"),
        pl.when(pl.col("max_epochs") < PAPER_WARMUP_EPOCHS).then(pl.lit(", early training"))
        .otherwise(pl.lit("")))


def design_frame(trials: pl.DataFrame) -> pl.DataFrame:
    """Every trial with a row index ``row``, the list settings as text, its ``budget`` label
    and ``found`` (completed with an IS LL)."""
    return trials.with_row_index("row").with_columns(
        *[pl.col(col).cast(pl.List(pl.String)).list.join(",").alias(key)
          for key, col in LIST_SETTINGS.items()],
        ((pl.col("state") == COMPLETED) & pl.col("test_ll").is_not_null()
         & pl.col("test_ll").is_finite()).alias("found"),
        budget_expr().alias("budget"),
    )


@dataclass(frozen=True)
class Comparison:
    """One comparison A − B: its claim, scope, name, expected sign (+1: A better; None for an
    equivalence) and its pairs (row_a, row_b, key_a, key_b, state_a, state_b, seed)."""

    claim: str
    scope: str
    name: str
    expected: int | None
    pairs: pl.DataFrame

    @property
    def seeds(self) -> list[int]:
        return sorted(self.pairs["seed"].unique().to_list())

    def seed_differences(self, values: np.ndarray, found: np.ndarray) -> np.ndarray:
        """d (..., n_seeds) over `seeds`: the mean of values[a] − values[b] over each seed's
        pairs, NaN for a seed with a pair not found. ``values`` and ``found`` (..., n_rows)."""
        a, b = self.pairs["row_a"].to_numpy(), self.pairs["row_b"].to_numpy()
        seed_of = np.searchsorted(self.seeds, self.pairs["seed"].to_numpy())
        diff = values[..., a] - values[..., b]
        ok = found[..., a] & found[..., b]
        n_seeds = len(self.seeds)
        total = np.zeros((*diff.shape[:-1], n_seeds))
        missing = np.zeros((*diff.shape[:-1], n_seeds), dtype=bool)
        count = np.bincount(seed_of, minlength=n_seeds)
        for s in range(n_seeds):
            cols = seed_of == s
            total[..., s] = np.where(ok[..., cols], diff[..., cols], 0.0).sum(-1)
            missing[..., s] = ~ok[..., cols].all(-1)
        return np.where(missing, np.nan, total / count)

    def missing(self, frame: pl.DataFrame) -> list[str]:
        """"key (STATE)" for every trial of an expected pair that was not found."""
        rows = np.unique(np.concatenate([self.pairs["row_a"].to_numpy(),
                                         self.pairs["row_b"].to_numpy()]))
        lost = frame.filter(pl.col("row").is_in(rows.tolist()) & ~pl.col("found"))
        return [f"{k} ({s})" for k, s in lost.select("trial_key", "state").sort("trial_key")
                .iter_rows()]

    def trial_keys(self) -> list[str]:
        return sorted(set(self.pairs["key_a"].to_list()) | set(self.pairs["key_b"].to_list()))


def _check_unique(side: pl.DataFrame, on: list[str], what: str) -> None:
    dup = side.group_by(on).agg(pl.col("trial_key")).filter(pl.col("trial_key").list.len() > 1)
    if dup.height:
        keys = ", ".join(dup["trial_key"][0].to_list())
        raise DesignError(f"{what}: the trials {keys} have the same settings and seed, so the "
                          "pairing is not one-to-one (a repeated configuration?)")


def pair(frame: pl.DataFrame, a: pl.Expr, b: pl.Expr, compared: Sequence[str],
         what: str, a_many: Sequence[str] = ()) -> pl.DataFrame:
    """The pairs of side A (rows where ``a``) and side B (``b``) equal on every setting except
    ``compared`` (see the module docstring)."""
    on = [c for c in SETTINGS if c not in compared] + ["seed"]
    cols = ["row", "trial_key", "state"]
    side_a, side_b = frame.filter(a), frame.filter(b)
    _check_unique(side_b, on, f"{what} (side B)")
    _check_unique(side_a, on + list(a_many), f"{what} (side A)")
    left = side_a.select(*on, *[pl.col(c).alias(f"{c}_a") for c in cols])
    right = side_b.select(*on, *[pl.col(c).alias(f"{c}_b") for c in cols])
    joined = left.join(right, on=on, nulls_equal=True)
    return joined.select(pl.col("row_a"), pl.col("row_b"), pl.col("trial_key_a").alias("key_a"),
                         pl.col("trial_key_b").alias("key_b"), "state_a", "state_b", "seed")


def comparison(claim: str, scope: str, name: str, expected: int | None, frame: pl.DataFrame,
               a: pl.Expr, b: pl.Expr, compared: Sequence[str],
               a_many: Sequence[str] = ()) -> Comparison | None:
    """A `Comparison`, or None when the design has no pair for it."""
    pairs = pair(frame, a, b, compared, f"claim ({claim}) {name} in {scope}", a_many)
    return Comparison(claim, scope, name, expected, pairs) if pairs.height else None


def scopes(frame: pl.DataFrame, keys: list[str]):
    for values, part in frame.group_by(keys, maintain_order=True):
        yield " · ".join(str(v) for v in values), part


SCOPE = ["study", "dataset", "arch", "budget"]
PM = pl.col("prior") == "pseudo_mixture"
OURS = {"e*", "g*", "d*"}  # rows of our own questions: not part of the paper's claim verdicts


def _claim_g(scope: str, part: pl.DataFrame) -> list[Comparison | None]:
    """Claim (g): GMMpVAE (M > 1, uniform π) against VampPrior (M = 1 trained with `mc`, its
    own Monte Carlo KL) at the same K, and against the VAE of the same estimator (averaged over
    K within a seed); with the paper's bound (greedy) as claim g, with our `lse` as g*."""
    vamp = PM & (pl.col("M") == 1) & (pl.col("kl_estimator") == "mc") & pl.col("pi_uniform")
    out = []
    for m in sorted(part.filter(PM & (pl.col("M") > 1))["M"].unique().to_list()):
        for est, claim in (("greedy", "g"), ("lse", "g*")):
            gmm = PM & (pl.col("M") == m) & pl.col("pi_uniform") & (pl.col("kl_estimator") == est)
            vae = (pl.col("prior") == "standard") & (pl.col("kl_estimator") == est)
            out += [comparison(claim, scope, f"Mix{m} ({est}) − VampPrior (Mix1, mc)", 1, part,
                               gmm, vamp, ["M", "kl_estimator", "pi_key"]),
                    comparison(claim, scope, f"Mix{m} ({est}) − VAE", 1, part, gmm, vae,
                               ["prior", "M", "K", "pi_key"], a_many=["K"])]
    return out


def design(frame: pl.DataFrame) -> list[Comparison]:
    """Every comparison of claims (a), (b), (c), (e), (g) the study's trials allow (all
    states)."""
    out: list[Comparison | None] = []
    for scope, part in scopes(frame, [*SCOPE, "kl_estimator"]):
        uniform = PM & pl.col("pi_uniform")
        vae = (pl.col("prior") == "standard") & (pl.col("M") == 1)
        out.append(comparison("a", scope, "Mix1 − VAE", 1, part, uniform & (pl.col("M") == 1),
                              vae, ["prior", "K"], a_many=["K"]))
        for m in (1, 2):
            out.append(comparison("a", scope, f"Mix{m + 1} − Mix{m}", 1, part,
                                  uniform & (pl.col("M") == m + 1), uniform & (pl.col("M") == m),
                                  ["M", "pi_key"]))
        out.append(comparison("b", scope, "K=500 − K=100", 1, part, PM & (pl.col("K") == 500),
                              PM & (pl.col("K") == 100), ["K"]))
        mixtures = part.filter(PM & (pl.col("M") > 1))
        settings = (mixtures.filter(~pl.col("pi_uniform")).select("M", "pi_key", "pi_label",
                                                                  "pi_max")
                    .unique().sort("M", "pi_max", "pi_key"))
        for m, pi_key, label, _ in settings.iter_rows():
            out.append(comparison("c", scope, f"M={m} π={label} − uniform", None, part,
                                  PM & (pl.col("M") == m) & (pl.col("pi_key") == pi_key),
                                  PM & (pl.col("M") == m) & pl.col("pi_uniform"), ["pi_key"]))
    for scope, part in scopes(frame.filter(PM), SCOPE):
        present = sorted(part["kl_estimator"].drop_nulls().unique().to_list())
        greedy = pl.col("kl_estimator") == "greedy"
        for other in [e for e in present if e != "greedy"]:
            out.append(comparison("e", scope, f"{other} − greedy", -1, part,
                                  pl.col("kl_estimator") == other, greedy, ["kl_estimator"]))
        if {"lse", "mc"} <= set(present):
            out.append(comparison("e*", scope, "lse − mc (ours, not the paper's)", 1, part,
                                  pl.col("kl_estimator") == "lse", pl.col("kl_estimator") == "mc",
                                  ["kl_estimator"]))
    for scope, part in scopes(frame, SCOPE):
        out += _claim_g(scope, part)
    return [c for c in out if c is not None]


@dataclass(frozen=True)
class RankDesign:
    """Claim (d) in one scope: ``rows`` (models, seeds) of trial rows (−1: no trial), the model
    labels and the seeds."""

    scope: str
    rows: np.ndarray
    models: list[str]
    seeds: list[int]
    claim: str = "d"  # "d*" for a model trained with another objective than the paper's


def rank_design(frame: pl.DataFrame) -> list[RankDesign]:
    """Claim (d): the pseudo-mixture models (every setting but the seed) × seeds, per scope
    (the VAE is left out: its "bound" is its exact ELBO, not the paper's bound)."""
    out = []
    for scope, part in scopes(frame.filter(PM), [*SCOPE, "kl_estimator"]):
        estimator = part["kl_estimator"][0]
        model_on = list(SETTINGS)
        _check_unique(part, [*model_on, "seed"], f"claim (d) in {scope}")
        models = part.select(*model_on, "label").unique(subset=model_on, maintain_order=True)
        seeds = sorted(part["seed"].drop_nulls().unique().to_list())
        if models.height < 3 or not seeds:
            continue
        models = models.with_row_index("model_index")
        cells = part.join(models.select(*model_on, "model_index"), on=model_on,
                          nulls_equal=True)
        rows = np.full((models.height, len(seeds)), -1)
        for model, seed, row in cells.select("model_index", "seed", "row").iter_rows():
            rows[model, seeds.index(seed)] = row
        out.append(RankDesign(scope, rows, models["label"].to_list(), seeds,
                              "d" if estimator in ("greedy", None) else "d*"))
    out.sort(key=lambda rd: rd.claim)  # the paper's objective first
    return out
