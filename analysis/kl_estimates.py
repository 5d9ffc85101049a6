"""The KL estimates side by side: the paper's bound U, our U_lse and the Monte Carlo KL per model.

Per model (a row of Table 1: the grouping keys of `Frames.model_keys`, so the KL estimator a
model was trained with is part of its label when it varies), the mean over its completed seeds
of the test-set U (``test_kl``, eq. 18/22), U_lse (``test_kl_lse``, models.kl), KL_MC
(``test_kl_mc``), the looseness of both bounds U − KL_MC and U_lse − KL_MC, the spread ratio of
the pseudo-input posteriors and how many seeds collapsed (models.diagnostics). Version-1
studies have no U_lse: skipped.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis.load import COMPLETED, Frames, model_order
from analysis.registry import register
from analysis.tables import drop_single_study, number, write_table


def prep(frames: Frames) -> pl.DataFrame:
    keys = frames.model_keys
    return (
        frames.trials.filter((pl.col("state") == COMPLETED) & pl.col("test_kl_lse").is_not_null())
        .group_by(keys)
        .agg(
            pl.len().alias("n_seeds"),
            pl.col("test_kl").mean().alias("U"),
            pl.col("test_kl_lse").mean().alias("U_lse"),
            pl.col("test_kl_mc").mean().alias("KL_MC"),
            (pl.col("test_kl") - pl.col("test_kl_mc")).mean().alias("U_gap"),
            (pl.col("test_kl_lse") - pl.col("test_kl_mc")).mean().alias("lse_gap"),
            pl.col("spread_ratio").mean().alias("spread_ratio"),
            pl.col("collapsed").sum().alias("collapsed"),
        )
        .sort(["study", "dataset", "arch", model_order(), "K", "label"], nulls_last=True)
    )


def display(df: pl.DataFrame) -> pl.DataFrame:
    shown = df.select(
        "study", "label", pl.col("n_seeds").alias("seeds"),
        number("U"), number("U_lse"), number("KL_MC"),
        number("U_gap").alias("U − KL_MC"), number("lse_gap").alias("U_lse − KL_MC"),
        number("spread_ratio", 3).alias("spread ratio"),
        pl.col("collapsed").cast(pl.String).fill_null("–").alias("collapsed seeds"),
    )
    return drop_single_study(shown, df)


@register(
    "kl_estimates",
    title="KL estimates — the paper bound U, the lse bound and the Monte Carlo KL",
    caption=(
        "Per model, means over seeds on the test set (nats per image): U (the paper's bound, "
        "eq. 18/22), U_lse = −log (1/K) Σ_k exp(−B_βk) (ours, ≤ U), KL_MC (Monte Carlo, "
        "importance samples), their gaps to KL_MC, the spread ratio of the pseudo-input "
        "posteriors and the number of seeds whose prior collapsed (models.collapse_rule). A gap "
        "near 0 with a collapsed prior is not a tight bound: the members became alike."
    ),
    prep=prep,
    absent="no completed trial reports U_lse (a schema-version-1 study)",
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    return write_table(df, display(df), out_dir, "kl_estimates")
