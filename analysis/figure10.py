"""Figure 10: histograms of the per-image test log-likelihood, one panel per model.

The per-image IS log-likelihoods of ``test_ll.parquet`` (completed trials; all seeds of a model
pooled), binned on ``N_BINS`` equal bins shared by every model of the same dataset (from the
dataset's lowest to its highest value), so the panels can be compared bin by bin. Heights are
densities (fraction of the model's images per nat), so models with more seeds or images are
comparable; when studies are compared, each study is one set of bars in the model's panel.
A study of many models shows at most ``MAX_PANELS`` of them — uniform-π models first (the
paper's), then in table order — and says so (``n_models`` is the number before the cut).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis.load import COMPLETED, Frames, arch_order, model_order
from analysis.registry import register
from analysis.style import model_colour, new_figure, save_figure

N_BINS = 40
MAX_PANELS = 36
PANEL = ["dataset", "label"]


def prep(frames: Frames, n_bins: int = N_BINS, max_panels: int = MAX_PANELS) -> pl.DataFrame:
    trials = frames.trials.lazy().filter(pl.col("state") == COMPLETED).select(
        "study", "trial_key", "dataset", "arch", "label", "model", "prior", "M", "K",
        "pi_uniform")
    values = (
        frames.test_ll.select("study", "trial_key", "log_likelihood")
        .filter(pl.col("log_likelihood").is_finite())
        .join(trials, on=["study", "trial_key"], how="inner")
        # shared bins per dataset: [lo, hi] cut in n_bins equal parts
        .with_columns(
            pl.col("log_likelihood").min().over("dataset").alias("lo"),
            pl.col("log_likelihood").max().over("dataset").alias("hi"),
        )
        .with_columns(
            pl.when(pl.col("hi") > pl.col("lo"))
            .then((pl.col("hi") - pl.col("lo")) / n_bins)
            .otherwise(1.0 / n_bins)
            .alias("width")
        )
        .with_columns(
            ((pl.col("log_likelihood") - pl.col("lo")) / pl.col("width"))
            .floor()
            .clip(0, n_bins - 1)
            .cast(pl.Int64)
            .alias("bin")
        )
    )
    series = [*PANEL, "study", "arch", "model", "prior", "M", "K"]
    # which panels are drawn: all of them, or the first max_panels, uniform π first
    panels = (
        values.group_by(PANEL)
        .agg(pl.col("pi_uniform").all(), pl.col("arch", "prior", "M", "K").first())
        .sort([pl.col("pi_uniform").not_(), "dataset", arch_order(), model_order(), "K",
               "label"], nulls_last=True)
        .with_columns(pl.len().alias("n_models"))
        .head(max_panels)
        .select(*PANEL, "n_models")
    )
    values = values.join(panels, on=PANEL, how="semi")
    counts = values.group_by([*series, "bin"]).agg(pl.len().alias("count"))
    totals = values.group_by(series).agg(
        pl.len().alias("n_images"),
        pl.col("trial_key").n_unique().alias("n_seeds"),
        pl.col("lo").first(),
        pl.col("width").first(),
    ).join(panels, on=PANEL, how="left")
    # every bin of every series, empty bins included (a histogram on shared bins)
    grid = totals.join(
        pl.LazyFrame({"bin": pl.int_range(n_bins, eager=True, dtype=pl.Int64)}), how="cross"
    )
    return (
        grid.join(counts, on=[*series, "bin"], how="left", nulls_equal=True)
        .with_columns(
            pl.col("count").fill_null(0),
            (pl.col("lo") + pl.col("bin") * pl.col("width")).alias("left"),
            (pl.col("lo") + (pl.col("bin") + 1) * pl.col("width")).alias("right"),
        )
        .with_columns(
            (pl.col("count") / (pl.col("n_images") * pl.col("width"))).alias("density")
        )
        .drop("lo")
        .sort(["dataset", arch_order(), model_order(), "K", "label", "study", "bin"],
              nulls_last=True)
        .collect()
    )


def notes(df: pl.DataFrame) -> list[str]:
    shown, total = df.select(PANEL).unique().height, int(df["n_models"].max())
    if shown < total:
        return [f"The figure shows {shown} of {total} models (uniform π first, then in table "
                "order)."]
    return []


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    keys = df.select(PANEL).unique(maintain_order=True).rows()
    studies = df["study"].unique(maintain_order=True).to_list()
    models = df["model"].unique().to_list()
    fig, axes = new_figure(len(keys), ncols=4, panel_size=(3.4, 2.6))
    for ax, (dataset, label) in zip(axes, keys, strict=True):
        part = df.filter((pl.col("dataset") == dataset) & (pl.col("label") == label))
        for (study,), bars in part.group_by(["study"], maintain_order=True):
            many = len(studies) > 1
            colour = f"C{studies.index(study)}" if many else model_colour(bars["model"][0], models)
            ax.bar(bars["left"].to_numpy(), bars["density"].to_numpy(),
                   width=bars["width"].to_numpy(), align="edge", color=colour,
                   alpha=0.5 if many else 0.85, label=study if many else None)
        ax.set_title(f"{dataset} · {label}", fontsize="small")
        ax.set_xlabel("test log-likelihood (nats)")
        ax.set_ylabel("density")
        if len(studies) > 1:
            ax.legend(fontsize="x-small")
    return fig


@register(
    "figure10",
    title="Figure 10 — histograms of the per-image test log-likelihood",
    caption=(
        "Per-image importance-sampled log-likelihood on the test set, one panel per model "
        "(seeds pooled), on bins shared by all models of a dataset; heights are densities."
    ),
    prep=prep,
    absent="no per-image test log-likelihoods (test_ll.parquet) for completed trials",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    return save_figure(draw(df), out_dir, "figure10")
