"""The collapse figure: prior-collapse diagnostics against epoch, next to Figure 2.

One row of panels per diagnostic (`DRAWN`, defined in models.diagnostics: the spread ratio of
the pseudo-input posterior means, the responsibility perplexity and the members used — both
relative to K — and the validation gap U − KL_MC of the paper's bound), one column per KL
estimator the models were trained with; in each panel one line per pseudo-mixture model (M, K,
and study / dataset / arch where several), the mean over seeds at each epoch. Completed trials
only; the VAE has no pseudo-inputs and no diagnostics. The dashed lines are the collapse rule's
thresholds (`models.collapse_rule`, torch-free: spread ratio < COLLAPSE_SPREAD and perplexity
> COLLAPSE_PERPLEXITY, after the warm-up); the notes count a model collapsed only when its
spread also fell below FELL × its largest earlier value, "not yet spread" when it did not.
Version-1 studies have no diagnostics: skipped.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis.budget_keys import at_largest_budget
from analysis.load import COMPLETED, Frames
from analysis.registry import register
from analysis.style import model_colour, new_figure, save_figure
from models.collapse_rule import COLLAPSE_PERPLEXITY, COLLAPSE_SPREAD, FELL

DRAWN = ("spread_ratio", "resp_perplexity", "members_used", "bound_gap")
Y_LABELS = {
    "spread_ratio": "spread of μ(a_k) / spread of μ(x)",
    "resp_perplexity": "perplexity of p(k|z) / K",
    "members_used": "members used / K",
    "bound_gap": "U − KL_MC (nats)",
}
THRESHOLD = COLLAPSE_SPREAD
SERIES = ["study", "dataset", "arch", "model", "K"]


def prep(frames: Frames) -> pl.DataFrame:
    """Long data: SERIES, kl_estimator, epoch, diagnostic, mean (over seeds), n_seeds."""
    trials = (
        at_largest_budget(frames.trials).lazy()
        .filter((pl.col("state") == COMPLETED) & (pl.col("prior") == "pseudo_mixture"))
        .select("study", "trial_key", "dataset", "arch", "model", "M", "K",
                pl.col("kl_estimator").fill_null("greedy"))
    )
    return (
        frames.epochs.select("study", "trial_key", "epoch", *DRAWN)
        .join(trials, on=["study", "trial_key"], how="inner")
        .unpivot(index=["study", "trial_key", "epoch", "dataset", "arch", "model", "M", "K",
                        "kl_estimator"], on=list(DRAWN), variable_name="diagnostic")
        .filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
        .group_by([*SERIES, "M", "kl_estimator", "diagnostic", "epoch"])
        .agg(pl.col("value").mean().alias("mean"), pl.len().alias("n_seeds"))
        .sort(["diagnostic", "kl_estimator", "study", "dataset", "arch", "M", "K", "epoch"])
        .collect()
    )


def panels(df: pl.DataFrame) -> list[tuple[str, str]]:
    """(diagnostic, estimator) in row-major order: rows DRAWN (those present), columns the
    estimators in alphabetical order."""
    present = set(df["diagnostic"].unique().to_list())
    estimators = sorted(df["kl_estimator"].unique().to_list())
    return [(d, e) for d in DRAWN if d in present for e in estimators]


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    keys = panels(df)
    estimators = sorted(df["kl_estimator"].unique().to_list())
    fig, axes = new_figure(len(keys), ncols=len(estimators))
    models = df["model"].unique().to_list()
    ks = sorted(df["K"].drop_nulls().unique().to_list())
    several = df.select("study", "dataset", "arch").unique().height > 1
    for ax, (diagnostic, estimator) in zip(axes, keys, strict=True):
        part = df.filter((pl.col("diagnostic") == diagnostic)
                         & (pl.col("kl_estimator") == estimator))
        for (study, dataset, arch, model, k), line in part.group_by(SERIES, maintain_order=True):
            name = f"{model} K={k}" + (f" ({study} {dataset} {arch})" if several else "")
            style = ("-", "--", ":", "-.")[ks.index(k) % 4] if k in ks else "-"
            ax.plot(line["epoch"].to_numpy(), line["mean"].to_numpy(), label=name,
                    color=model_colour(model, models), linestyle=style)
        if diagnostic == "spread_ratio":
            ax.set_yscale("log")
            ax.axhline(THRESHOLD, color="0.5", linestyle="--", linewidth=0.8)
        if diagnostic == "resp_perplexity":
            ax.axhline(COLLAPSE_PERPLEXITY, color="0.5", linestyle="--", linewidth=0.8)
        ax.set_title(f"KL={estimator}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(Y_LABELS[diagnostic])
        if diagnostic == DRAWN[0]:
            ax.legend(fontsize="x-small")
    return fig


def notes(df: pl.DataFrame) -> list[str]:
    keys = [*SERIES, "kl_estimator"]
    spread = (df.filter(pl.col("diagnostic") == "spread_ratio").sort("epoch").group_by(keys)
              .agg(pl.col("mean").last().alias("spread_ratio"),
                   pl.col("mean").head(pl.len() - 1).max().alias("peak")))
    perplexity = (df.filter(pl.col("diagnostic") == "resp_perplexity").sort("epoch")
                  .group_by(keys).agg(pl.col("mean").last().alias("resp_perplexity")))
    last = spread.join(perplexity, on=keys, how="left", nulls_equal=True)
    lines = []
    for (estimator,), part in last.group_by(["kl_estimator"], maintain_order=True):
        small = (part["spread_ratio"] < THRESHOLD) & (
            part["resp_perplexity"].fill_null(1.0) > COLLAPSE_PERPLEXITY)
        fell = part["spread_ratio"] < FELL * part["peak"].fill_null(float("inf"))
        lines.append(f"KL={estimator}: {int((small & fell).sum())} of {part.height} models end "
                     f"collapsed, {int((small & ~fell).sum())} not yet spread (last epoch, "
                     f"mean over seeds: spread ratio < {THRESHOLD:g} and perplexity/K > "
                     f"{COLLAPSE_PERPLEXITY:g}; collapsed when the spread fell below "
                     f"{FELL:g} × its largest earlier value, models.collapse_rule).")
    return sorted(lines)


@register(
    "collapse",
    title="Prior collapse — diagnostics over epochs",
    caption=(
        "Validation-set diagnostics of the pseudo-input prior per epoch (mean over seeds), one "
        "column per KL estimator. A collapsed prior has spread ratio → 0 (below the dashed "
        "threshold) and responsibility perplexity → 1 (above its dashed threshold: all K "
        "members alike) — both are needed —, and a bound gap "
        "U − KL_MC → 0 (the bound is 'tight' only because the members became alike)."
    ),
    prep=prep,
    absent="no per-epoch collapse diagnostics (a schema-version-1 study, or no pseudo-mixture "
           "trial completed)",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    return save_figure(draw(df), out_dir, "collapse")
