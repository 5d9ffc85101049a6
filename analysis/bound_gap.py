"""The bound gap: how loose is the paper's greedy bound, and does it rank models like IS LL?

The paper trains and reports L(x) = E_q[log p(x|z)] − U(x) (eq. 23), where U is the matched
bound on the KL (eq. 12/13, 18/22): a lower bound on the ELBO, itself a lower bound on log p(x).
Per model this output gives, averaged over seeds (mean and sample std, ddof = 1, of the per-trial
differences):

- ``gap_ll`` = IS LL − bound: how far the reported "≤ ln p(x)" is below the likelihood;
- ``gap_mc`` = MC ELBO − bound: the part of that gap due to U ≥ KL alone.

Within each (study, dataset) the models are ranked by the bound and by the IS LL (Polars
``rank("average", descending=True)``: best = 1, ties share their mean rank), and the two
rankings are compared with Spearman's ρ (Pearson correlation of the ranks) and Kendall's τ-b
(pairs of models: concordant − discordant over the untied pairs). τ is left null for groups of
more than ``KENDALL_MAX_MODELS`` models (the pair table grows as n²); ρ is always given.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis.load import COMPLETED, Frames, model_order
from analysis.registry import register
from analysis.style import model_colour, new_figure, save_figure, study_style
from analysis.tables import drop_single_study, mean_std, number, write_table

RANK_GROUP = ["study", "dataset"]
KENDALL_MAX_MODELS = 2000


def kendall_tau(df: pl.DataFrame, by: list[str], x: str, y: str,
                max_n: int = KENDALL_MAX_MODELS) -> pl.DataFrame:
    """Kendall's τ-b between columns ``x`` and ``y`` within each ``by`` group (pairs i < j)."""
    d = (
        df.lazy()
        .select(*by, x, y)
        .filter(pl.col(x).is_not_null() & pl.col(y).is_not_null())
        .filter(pl.len().over(by) <= max_n)
        .with_row_index("_i")
    )
    dx = (pl.col(x) - pl.col(f"{x}_j")).sign()
    dy = (pl.col(y) - pl.col(f"{y}_j")).sign()
    return (
        d.join(d, on=by, suffix="_j", nulls_equal=True)
        # each unordered pair once
        .filter(pl.col("_i") < pl.col("_i_j"))
        .group_by(by)
        .agg(
            (dx * dy).sum().alias("_s"),
            (dx != 0).sum().alias("_nx"),
            (dy != 0).sum().alias("_ny"),
        )
        .select(*by, (pl.col("_s") / (pl.col("_nx") * pl.col("_ny")).sqrt()).alias("kendall_tau"))
        .collect()
    )


def prep(frames: Frames) -> pl.DataFrame:
    keys = frames.model_keys
    per_model = (
        frames.trials.lazy()
        .filter(pl.col("state") == COMPLETED)
        # the gaps of each trial, then their mean and sample std over seeds
        .with_columns(
            (pl.col("test_ll") - pl.col("test_elbo_bound")).alias("gap_ll"),
            (pl.col("test_elbo_mc") - pl.col("test_elbo_bound")).alias("gap_mc"),
        )
        .group_by(keys)
        .agg(
            pl.len().alias("n_seeds"),
            pl.col("test_ll").mean().alias("ll"),
            pl.col("test_elbo_bound").mean().alias("bound"),
            pl.col("test_elbo_mc").mean().alias("mc"),
            *[pl.col(g).mean().alias(f"{g}_mean") for g in ("gap_ll", "gap_mc")],
            *[pl.col(g).std(ddof=1).alias(f"{g}_std") for g in ("gap_ll", "gap_mc")],
        )
        # a ranking needs both numbers
        .filter(pl.col("ll").is_not_null() & pl.col("bound").is_not_null())
        # rank the models of one study and dataset: 1 = best
        .with_columns(
            pl.col("bound").rank("average", descending=True).over(RANK_GROUP).alias("rank_bound"),
            pl.col("ll").rank("average", descending=True).over(RANK_GROUP).alias("rank_ll"),
            pl.len().over(RANK_GROUP).alias("n_models"),
        )
        .with_columns(
            pl.corr("rank_bound", "rank_ll").fill_nan(None).over(RANK_GROUP).alias("spearman"),
        )
        .collect()
    )
    if per_model.is_empty():
        return per_model.with_columns(pl.lit(None, dtype=pl.Float64).alias("kendall_tau"))
    tau = kendall_tau(per_model, RANK_GROUP, "rank_bound", "rank_ll")
    return per_model.join(tau, on=RANK_GROUP, how="left", nulls_equal=True).sort(
        [*RANK_GROUP, "rank_bound", "label"], nulls_last=True
    )


def agreement(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (study, dataset): the two rank correlations and the best model by each."""
    return (
        df.group_by(RANK_GROUP)
        .agg(
            pl.col("n_models").first(),
            pl.col("kendall_tau").first(),
            pl.col("spearman").first(),
            pl.col("label").sort_by("rank_bound").first().alias("best_by_bound"),
            pl.col("label").sort_by("rank_ll").first().alias("best_by_ll"),
        )
        .with_columns((pl.col("best_by_bound") == pl.col("best_by_ll")).alias("same_best"))
        .sort(RANK_GROUP)
    )


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    """One panel per dataset: IS LL against the bound, one point per model, y = x dashed."""
    datasets = df["dataset"].unique(maintain_order=True).to_list()
    studies = df["study"].unique(maintain_order=True).to_list()
    models = df["model"].unique().to_list()
    fig, axes = new_figure(len(datasets), ncols=3, panel_size=(4.2, 3.6))
    for ax, dataset in zip(axes, datasets, strict=True):
        part = df.filter(pl.col("dataset") == dataset).sort(["study", model_order()])
        for (study, model), points in part.group_by(["study", "model"], maintain_order=True):
            _, marker = study_style(study, studies)
            ax.scatter(points["bound"], points["ll"], color=model_colour(model, models),
                       marker=marker, label=f"{model} ({study})" if len(studies) > 1 else model)
        low = min(part["bound"].min(), part["ll"].min())
        high = max(part["bound"].max(), part["ll"].max())
        ax.plot([low, high], [low, high], linestyle="--", color="0.6", linewidth=1)
        ax.set_title(str(dataset))
        ax.set_xlabel("bound ≤ ln p(x) (nats)")
        ax.set_ylabel("IS log-likelihood (nats)")
        ax.legend(fontsize="small")
    return fig


def display(df: pl.DataFrame) -> pl.DataFrame:
    shown = df.select(
        "study",
        "dataset",
        pl.col("label").alias("model"),
        pl.col("n_seeds").alias("seeds"),
        number("ll").alias("IS LL"),
        number("bound").alias("≤ ln p(x)"),
        number("mc").alias("MC ELBO"),
        mean_std("gap_ll_mean", "gap_ll_std").alias("IS LL − bound"),
        mean_std("gap_mc_mean", "gap_mc_std").alias("MC ELBO − bound"),
        pl.col("rank_bound").alias("rank by bound"),
        pl.col("rank_ll").alias("rank by IS LL"),
    )
    return drop_single_study(shown, df)


def notes(df: pl.DataFrame) -> list[str]:
    lines = []
    for row in agreement(df).iter_rows(named=True):
        tau = "n/a" if row["kendall_tau"] is None else f"{row['kendall_tau']:.3f}"
        rho = "n/a" if row["spearman"] is None else f"{row['spearman']:.3f}"
        verdict = "the same model" if row["same_best"] else (
            f"different models ({row['best_by_bound']} by the bound, {row['best_by_ll']} by IS LL)"
        )
        lines.append(
            f"{row['study']} / {row['dataset']}: {row['n_models']} models, Kendall's τ = {tau}, "
            f"Spearman's ρ = {rho} between the two rankings; the best by each is {verdict}."
        )
    return lines


@register(
    "bound_gap",
    title="The bound gap — how loose is the greedy bound?",
    caption=(
        "Per model (mean ± sample std over seeds): IS LL − bound and MC ELBO − bound, where the "
        "bound is the paper's ≤ ln p(x) = −(RE + U). Ranks are within a study and dataset "
        "(1 = best); Kendall's τ-b and Spearman's ρ compare the ranking by the bound with the "
        "ranking by IS LL. The figure puts each model's IS LL against its bound (dashed: y = x)."
    ),
    prep=prep,
    absent="no completed trial has both an IS log-likelihood and a bound",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    paths = write_table(df, display(df), out_dir, "bound_gap")
    summary = agreement(df)
    shown = summary.with_columns(number("kendall_tau", 3), number("spearman", 3))
    paths += write_table(summary, drop_single_study(shown, df), out_dir, "bound_gap_ranking")
    return paths + save_figure(draw(df), out_dir, "bound_gap")
