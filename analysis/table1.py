"""Table 1: mean ± std over seeds of the test metrics of every model.

One row per model — study, dataset, architecture, prior, M, K, plus π, the KL estimator and the
latent size where those vary (``Frames.model_keys``) — over the COMPLETED trials only. Every
metric is averaged per image first (that is how a trial reports it) and then over seeds:
``*_mean`` is the mean over seeds and ``*_std`` the **sample** standard deviation over seeds
(ddof = 1, as the paper's "± std" over 3 runs; null when only one seed finished). ``n_seeds``
counts the completed trials of the model.

Metrics (nats per image): ``test_ll`` the importance-sampled log-likelihood; ``test_elbo_bound``
the paper's "≤ ln p(x)" = −(RE + U) with the matched bound U (eq. 18/22); ``test_elbo_mc`` the
ELBO with the Monte Carlo KL; ``test_re`` RE = −E_q[log p(x|z)]; ``test_kl`` the bound U;
``test_kl_mc`` the Monte Carlo KL.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis.load import COMPLETED, Frames, arch_order, model_order
from analysis.registry import register
from analysis.tables import drop_single_study, mean_std, write_table

METRICS = {
    "test_ll": "IS LL",
    "test_elbo_bound": "≤ ln p(x)",
    "test_elbo_mc": "MC ELBO",
    "test_re": "RE",
    "test_kl": "KL",
    "test_kl_mc": "KL (MC)",
}
SHOWN_METRICS = ("test_ll", "test_elbo_bound", "test_elbo_mc", "test_re", "test_kl")
EXTRA_HEADERS = {"pi_label": "π", "kl_estimator": "KL estimator", "latent_dim": "D"}


def prep(frames: Frames) -> pl.DataFrame:
    keys = frames.model_keys
    return (
        frames.trials.lazy()
        # only finished trials are seeds of a result
        .filter(pl.col("state") == COMPLETED)
        # one row per model: mean and sample std (ddof=1) over its seeds
        .group_by(keys)
        .agg(
            pl.len().alias("n_seeds"),
            pl.col("seed").sort().alias("seeds"),
            pl.col("pi_uniform").all().alias("pi_uniform"),
            *[pl.col(m).mean().alias(f"{m}_mean") for m in METRICS],
            *[pl.col(m).std(ddof=1).alias(f"{m}_std") for m in METRICS],
        )
        # paper order: study, dataset, architecture, VAE then Mix1..MixM, K
        .sort(["study", "dataset", arch_order(), model_order(), "K", *frames.extra_keys],
              nulls_last=True)
        .collect()
    )


def display(df: pl.DataFrame) -> pl.DataFrame:
    """The table as a reader sees it: one "mean ± std" text cell per metric."""
    extras = [k for k in EXTRA_HEADERS if k in df.columns]
    shown = df.select(
        "study",
        "dataset",
        "arch",
        "model",
        pl.col("K").cast(pl.String).fill_null("–"),
        *[pl.col(k).cast(pl.String).alias(EXTRA_HEADERS[k]) for k in extras],
        pl.col("n_seeds").alias("seeds"),
        *[mean_std(f"{m}_mean", f"{m}_std").alias(METRICS[m]) for m in SHOWN_METRICS],
    )
    return drop_single_study(shown, df)


@register(
    "table1",
    title="Table 1 — test log-likelihood, bound, RE and KL (mean ± std over seeds)",
    caption=(
        "One row per model over its completed seeds (sample std, ddof = 1). IS LL: importance-"
        "sampled log-likelihood; ≤ ln p(x): the paper's bound −(RE + U); MC ELBO: the ELBO with "
        "the Monte Carlo KL; RE and KL (the bound U used in training), nats per test image. "
        "VAE = standard prior, Mix1 = VampPrior, MixM = M-component pseudo-mixture prior."
    ),
    prep=prep,
    absent="no completed trials",
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    return write_table(df.drop("label"), display(df), out_dir, "table1")
