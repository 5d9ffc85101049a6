"""Figure 2: validation loss against epoch after the warm-up, one line per M (and the VAE).

One panel per (dataset, architecture, K); in each, one line per model (VAE, Mix1, Mix2, Mix3,
… and per study when comparing): the mean over seeds of the validation loss at each epoch, with
a band of ± one sample std (ddof = 1). Only epochs after the warm-up count: β_t = 1, or, when
the ``beta`` column is absent, epoch ≥ ``warmup_epochs`` (every epoch when both are absent).
Only completed trials, only uniform π (the paper's setting; Figure 4 is about π). The VAE has
no K and is drawn in every K panel as the reference. A model whose seeds stopped early at
different epochs is averaged over the seeds still running.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis.budget_keys import at_largest_budget
from analysis.load import COMPLETED, Frames, arch_order, model_order, spread_over_k
from analysis.registry import register
from analysis.style import model_colour, new_figure, save_figure, study_style

PANEL = ["dataset", "arch", "K"]
SERIES = ["study", "model", "variant"]


def prep(frames: Frames) -> pl.DataFrame:
    trials = (
        at_largest_budget(frames.trials).lazy()
        .filter((pl.col("state") == COMPLETED) & pl.col("pi_uniform"))
        .select("study", "trial_key", "dataset", "arch", "K", "model", "variant", "prior", "M",
                "warmup_epochs")
    )
    curves = (
        frames.epochs.select("study", "trial_key", "epoch", "beta", "val_loss")
        .filter(pl.col("val_loss").is_finite())
        .join(trials, on=["study", "trial_key"], how="inner")
        # after the warm-up only (the loss is not comparable while β < 1); without a beta
        # column β_t = min(1, epoch / warmup_epochs) says when it ended
        .filter(
            pl.coalesce(
                pl.col("beta") >= 1.0, pl.col("epoch") >= pl.col("warmup_epochs"), pl.lit(True)
            )
        )
        # mean and sample std over seeds at each epoch
        .group_by([*PANEL, *SERIES, "prior", "M", "epoch"])
        .agg(
            pl.col("val_loss").mean().alias("mean"),
            pl.col("val_loss").std(ddof=1).alias("std"),
            pl.len().alias("n_seeds"),
        )
    )
    return (
        spread_over_k(curves)
        .sort(["dataset", arch_order(), "K", "study", model_order(), "variant", "epoch"],
              nulls_last=True)
        .collect()
    )


def panels(df: pl.DataFrame) -> list[tuple]:
    return df.select(PANEL).unique(maintain_order=True).rows()


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    keys = panels(df)
    studies = df["study"].unique(maintain_order=True).to_list()
    models = df["model"].unique().to_list()
    fig, axes = new_figure(len(keys), ncols=3)
    for ax, (dataset, arch, k) in zip(axes, keys, strict=True):
        part = df.filter(
            (pl.col("dataset") == dataset) & (pl.col("arch") == arch)
            & (pl.col("K").is_null() if k is None else pl.col("K") == k)
        )
        for (study, model, variant), line in part.group_by(SERIES, maintain_order=True):
            colour = model_colour(model, models)
            linestyle, _ = study_style(study, studies)
            name = " ".join(s for s in (model, variant) if s)
            if len(studies) > 1:
                name += f" ({study})"
            epoch, mean = line["epoch"].to_numpy(), line["mean"].to_numpy()
            std = line["std"].fill_null(0.0).to_numpy()
            ax.plot(epoch, mean, color=colour, linestyle=linestyle, label=name)
            ax.fill_between(epoch, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        ax.set_title(f"{dataset} · {arch}" + ("" if k is None else f" · K={k}"))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss (nats)")
        ax.legend(fontsize="small")
    return fig


@register(
    "figure2",
    title="Figure 2 — validation loss after the warm-up",
    caption=(
        "Validation loss (−L, nats per image) against epoch after the KL warm-up, one line per "
        "model: mean over seeds with a ± one std band. One panel per dataset, architecture and "
        "K; the VAE (no pseudo-inputs) is repeated in each K panel as the reference."
    ),
    prep=prep,
    absent="no epoch rows after the warm-up for completed trials with uniform π",
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    return save_figure(draw(df), out_dir, "figure2")
