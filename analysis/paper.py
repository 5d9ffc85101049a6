"""Paper comparison (Tables 1–4 of Guo et al. 2020): measured values beside the reported ones.

``analysis/paper_results.csv`` (package data, copied from ``shared/paper_results.csv``) holds
the numbers the paper prints, one row per table row:

- ``table``: 1 (MNIST, GMMpVAE variants with VAE and VampPrior), 2 (MNIST against other
  methods), 3 (Omniglot), 4 (Frey Faces);
- ``dataset``, ``method``: the row as the paper names it;
- ``arch``, ``prior``, ``M``, ``K``: the configuration in this project's terms, empty where the
  method is not one this project trains (flows, IWAE, hierarchical VampPrior, …) — those rows
  are shown for context and never matched; ``K`` is empty for the plain VAE;
- ``ll_bound_mean``, ``ll_bound_std``: the reported "≤ ln p(x)" (for GMMpVAE rows the bound
  −(RE + U); other methods report their own estimate, mostly an importance-sampled LL);
- ``re``, ``kl``: the reported RE and KL where Table 1 gives them;
- ``source``: where the number is printed (and whom the paper cites for it).

The join is on dataset, arch, prior, M and K (a null K equals a null K) over the measured models
with uniform π (the paper's setting). Every paper row of a dataset the study measured is listed,
matched or not; a paper row matching several measured models (another KL estimator, another
study of ``--compare``) appears once per model.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import polars as pl

from analysis import table1
from analysis.load import Frames
from analysis.registry import register
from analysis.tables import drop_single_study, mean_std, number, write_table

PAPER_SCHEMA = {
    "table": pl.Int64,
    "dataset": pl.String,
    "method": pl.String,
    "arch": pl.String,
    "prior": pl.String,
    "M": pl.Int64,
    "K": pl.Int64,
    "ll_bound_mean": pl.Float64,
    "ll_bound_std": pl.Float64,
    "re": pl.Float64,
    "kl": pl.Float64,
    "source": pl.String,
}
JOIN_KEYS = ["dataset", "arch", "prior", "M", "K_key"]
NO_K = -1  # join key for "no K": polars joins do not match null with null by default


def paper_results() -> pl.DataFrame:
    """The paper's numbers, in file order (``row`` keeps that order)."""
    data = resources.files("analysis").joinpath("paper_results.csv").read_bytes()
    return pl.read_csv(io.BytesIO(data), schema=PAPER_SCHEMA).with_row_index("row")


def prep(frames: Frames) -> pl.DataFrame:
    measured = (
        table1.prep(frames)
        # the paper's rows use uniform mixture weights
        .filter(pl.col("pi_uniform"))
        .select(
            "study",
            "dataset",
            "arch",
            "prior",
            "M",
            pl.col("K").fill_null(NO_K).alias("K_key"),
            "label",
            "n_seeds",
            *[pl.col(f"{m}_{s}") for m in table1.METRICS for s in ("mean", "std")],
        )
    )
    paper = paper_results()
    return (
        paper
        # only the datasets this study measured
        .filter(pl.col("dataset").is_in(measured["dataset"].unique().implode()))
        .with_columns(pl.col("K").fill_null(NO_K).alias("K_key"))
        # measured values beside every paper row (null where nothing matches)
        .join(measured, on=JOIN_KEYS, how="left")
        .with_columns((pl.col("test_elbo_bound_mean") - pl.col("ll_bound_mean")).alias("delta"))
        .sort(["row", "study"], nulls_last=True)
        .drop("K_key")
    )


def display(df: pl.DataFrame) -> pl.DataFrame:
    shown = df.select(
        "table",
        "dataset",
        "method",
        pl.col("arch").fill_null(""),
        pl.col("M").cast(pl.String).fill_null(""),
        pl.col("K").cast(pl.String).fill_null(""),
        mean_std("ll_bound_mean", "ll_bound_std").alias("paper ≤ ln p(x)"),
        pl.col("study").fill_null(""),
        pl.col("n_seeds").cast(pl.String).fill_null("").alias("seeds"),
        mean_std("test_elbo_bound_mean", "test_elbo_bound_std").alias("measured ≤ ln p(x)"),
        number("delta").alias("Δ bound"),
        mean_std("test_ll_mean", "test_ll_std").alias("measured IS LL"),
        number("re").alias("paper RE"),
        mean_std("test_re_mean", "test_re_std").alias("measured RE"),
        number("kl").alias("paper KL"),
        mean_std("test_kl_mean", "test_kl_std").alias("measured KL"),
    )
    return drop_single_study(shown, df)


@register(
    "paper",
    title="Paper comparison (Tables 1–4)",
    caption=(
        "The values the paper reports (its Tables 1–4, VampPrior and other baselines included) "
        "beside this study's measurements of the same configuration (uniform π). Δ bound = "
        "measured ≤ ln p(x) − paper's value. GMMpVAE rows of the paper report the bound "
        "−(RE + U); most other methods report an importance-sampled LL, so compare those with "
        "the measured IS LL column. Rows without a configuration are other methods, for context."
    ),
    prep=prep,
    absent="the study has no dataset that the paper reports (mnist, omniglot, frey)",
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    return write_table(df.drop("row"), display(df), out_dir, "paper")
