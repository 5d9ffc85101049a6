"""Figure 3: the test bound-ELBO (top row) and the IS log-likelihood (bottom row) against K.

One column of panels per (dataset, architecture); in each panel one line with error bars per
model (VAE, Mix1, Mix2, Mix3, …; per study when comparing): the mean over seeds and ± one sample
std (ddof = 1) at each K. Completed trials with uniform π only. The VAE has no pseudo-inputs:
its value is drawn flat across the K values of the panel, as the reference. Panels without any
K (a VAE-only study) are left out. A study grown to several budgets (`gmmpvae extend`) is drawn
at each configuration's largest completed budget (`analysis.budget_keys.at_largest_budget`):
one line per model, as in the paper (every budget side by side is `budget_curves`; a line per
model and budget made a legend taller than the figure).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis.budget_keys import at_largest_budget
from analysis.load import COMPLETED, Frames, arch_order, model_order, spread_over_k
from analysis.registry import register
from analysis.style import model_colour, new_figure, save_figure, study_style

METRICS = {"elbo_bound": ("test_elbo_bound", "bound ≤ ln p(x) (nats)"),
           "ll": ("test_ll", "IS log-likelihood (nats)")}
PANEL = ["dataset", "arch"]
SERIES = ["study", "model", "variant"]


def prep(frames: Frames) -> pl.DataFrame:
    per_k = (
        at_largest_budget(frames.trials).lazy()
        .filter((pl.col("state") == COMPLETED) & pl.col("pi_uniform"))
        # one value per trial and metric (long form: a row of panels per metric)
        .unpivot(
            index=[*PANEL, *SERIES, "prior", "M", "K"],
            on=[column for column, _ in METRICS.values()],
            variable_name="metric",
        )
        .with_columns(
            pl.col("metric").replace_strict({c: name for name, (c, _) in METRICS.items()})
        )
        .filter(pl.col("value").is_not_null())
        # mean and sample std over seeds
        .group_by(["metric", *PANEL, *SERIES, "prior", "M", "K"])
        .agg(
            pl.col("value").mean().alias("mean"),
            pl.col("value").std(ddof=1).alias("std"),
            pl.len().alias("n_seeds"),
        )
    )
    return (
        spread_over_k(per_k, ["metric", *PANEL])
        # a panel needs a K axis
        .filter(pl.col("K").is_not_null())
        .sort(["metric", "dataset", arch_order(), "study", model_order(), "variant", "K"])
        .collect()
    )


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    metrics = [m for m in METRICS if m in set(df["metric"])]
    columns = df.select(PANEL).unique(maintain_order=True).rows()
    studies = df["study"].unique(maintain_order=True).to_list()
    models = df["model"].unique().to_list()
    # a model's lines (its KL estimators, budgets; its studies compared) told apart by style
    styles = [f"{study}|{variant}" for study, variant in
              df.select("study", "variant").unique(maintain_order=True).rows()]
    fig, axes = new_figure(len(metrics) * len(columns), rows=len(metrics),
                           panel_size=(6.5, 3.5))  # room for the legend beside each panel
    for r, metric in enumerate(metrics):
        for c, (dataset, arch) in enumerate(columns):
            ax = axes[r * len(columns) + c]
            part = df.filter(
                (pl.col("metric") == metric) & (pl.col("dataset") == dataset)
                & (pl.col("arch") == arch)
            )
            for (study, model, variant), line in part.group_by(SERIES, maintain_order=True):
                line = line.sort("K")
                linestyle, marker = study_style(f"{study}|{variant}", styles)
                name = " ".join(s for s in (model, variant) if s)
                if len(studies) > 1:
                    name += f" ({study})"
                ax.errorbar(line["K"].to_numpy(), line["mean"].to_numpy(),
                            yerr=line["std"].fill_null(0.0).to_numpy(), capsize=3,
                            color=model_colour(model, models), linestyle=linestyle,
                            marker=marker, label=name)
            ks = part["K"].unique()
            if len(ks) > 1 and ks.max() / max(ks.min(), 1) >= 10:
                ax.set_xscale("log")
            ax.set_title(f"{dataset} · {arch}")
            ax.set_xlabel("K (pseudo-inputs)")
            ax.set_ylabel(METRICS[metric][1])
            if len(part):  # beside the panel: a dozen lines would hide the data
                ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


@register(
    "figure3",
    title="Figure 3 — test bound and IS log-likelihood against K",
    caption=(
        "Top: the paper's bound ≤ ln p(x) = −(RE + U); bottom: the importance-sampled "
        "log-likelihood; both against the number of pseudo-inputs K, for VAE, Mix1 (VampPrior), "
        "Mix2 and Mix3 (mean ± sample std over seeds), one column per dataset and architecture. "
        "The VAE does not depend on K and is drawn flat. A study grown to several budgets is "
        "drawn at each configuration's largest completed budget (every budget: the budget "
        "curves)."
    ),
    prep=prep,
    absent="no completed pseudo-mixture trials with uniform π (no K axis)",
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    return save_figure(draw(df), out_dir, "figure3")
