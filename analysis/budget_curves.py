"""Budget curves: each model's test IS LL at every budget the study holds, beside the published
converged numbers — how far from convergence a verdict stands.

A study grown with ``gmmpvae extend`` (docs/BUDGETS.md) holds every configuration at several
``max_epochs``. Per model — a configuration less its seed and its budget
(`analysis.budget_keys.configuration`) — and budget: the mean over seeds of the completed
trials' test IS LL (a carried trial, which ended before its budget, counts with the result it
kept) and its 95% t interval over seeds (the range with fewer than 3 seeds, as the claims
section), against max_epochs. One panel per study, dataset, architecture and KL estimator.

Published converged numbers (`analysis.claims_paper.published`: the paper's Table 1 on MNIST,
Exemplar VAE's table on Fashion-MNIST — VAE −228.70, VampPrior −227.35, MLP, latent 40) are
the dashed lines: in every panel of their dataset and architecture the VAE and VampPrior (the
two anchors), and any other published model that one of the panel's models is. A model *is* a
published one (`published_name`) when it is trained as the source trained it: the VAE; Mix1
trained with `mc` (its own Monte Carlo KL) is VampPrior; MixM trained with the paper's bound
(`greedy`) is the paper's GMMpVAE row at its K. Its ``gap`` is the model's mean minus that
number (negative: short of convergence).

A study holding one budget has no curve: the output says so in one line and writes the table
only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from analysis import claims_design as cd
from analysis import claims_paper as cp
from analysis import claims_stats as cs
from analysis.budget_keys import configuration
from analysis.load import Frames
from analysis.registry import register
from analysis.style import model_colour, new_figure, save_figure
from analysis.tables import write_table

PANEL = ["study", "dataset", "arch", "kl_estimator"]
ANCHORS = ("VAE", "VampPrior")  # drawn in every panel of their dataset and architecture
# a model across budgets: its ``model_label`` (`analysis.load`: the label less the budget) is
# the ``label`` of this output
MODEL = ["study", "dataset", "arch", "kl_estimator", "prior", "model", "M", "K", "model_label"]


def published_name(prior: str, M: int | None, estimator: str | None) -> str | None:
    """The published model this one is (module docstring), or None."""
    if prior == "standard":
        return "VAE"
    if prior != "pseudo_mixture":
        return None
    if M == 1 and estimator == "mc":
        return "VampPrior"
    return f"Mix{M}" if estimator in ("greedy", None) else None


def _interval(values: list[float]) -> tuple[float, float, str]:
    """95% t interval over seeds, or the range with fewer than `claims_stats.MIN_SEEDS`."""
    x = np.asarray(values, dtype=float)
    if x.size < cs.MIN_SEEDS:
        return float(x.min()), float(x.max()), "range"
    n, mean, se = cs.seed_summary(x)
    low, high = cs.t_interval(mean, se, n - 1.0)
    return float(low), float(high), "95% t"


def prep(frames: Frames) -> pl.DataFrame:
    """One row per model and budget: seeds, mean IS LL, its interval, the epochs run, and the
    published number the model is (``published``, ``source``, ``gap``)."""
    frame = cd.design_frame(frames.trials).filter(pl.col("found"))
    if frame.is_empty():
        return pl.DataFrame()
    frame = frame.with_columns(configuration(frame, seed=False).alias("model_id"))
    out = frame.group_by([*MODEL, "model_id", "max_epochs"], maintain_order=True).agg(
        pl.col("seed").n_unique().alias("seeds"), pl.col("test_ll").mean().alias("mean"),
        pl.col("test_ll"), pl.col("epochs_run").min().alias("epochs_run_min"),
        pl.col("epochs_run").max().alias("epochs_run_max"))
    bounds = [_interval(v) for v in out["test_ll"].to_list()]
    table = cp.published()
    refs = [table.get((d, a, name, None if name == "VAE" else k), (None, None)) if name else
            (None, None) for d, a, name, k in zip(
                out["dataset"], out["arch"],
                [published_name(p, m, e) for p, m, e in out.select(
                    "prior", "M", "kl_estimator").iter_rows()], out["K"], strict=True)]
    return (out.drop("test_ll").with_columns(
        pl.Series("ci_low", [b[0] for b in bounds], pl.Float64),
        pl.Series("ci_high", [b[1] for b in bounds], pl.Float64),
        pl.Series("interval", [b[2] for b in bounds], pl.String),
        pl.Series("published", [r[0] for r in refs], pl.Float64),
        pl.Series("source", [r[1] for r in refs], pl.String))
        .with_columns((pl.col("mean") - pl.col("published")).alias("gap"))
        .rename({"model_label": "label"})
        .sort([*PANEL, "model_id", "max_epochs"], nulls_last=True))


def reference_lines(df: pl.DataFrame) -> pl.DataFrame:
    """The dashed lines per panel: (PANEL…, name, K, value, source) — the anchors of the
    panel's dataset and architecture and the published models the panel's models are."""
    table = cp.published()
    rows = []
    for key, part in df.group_by(PANEL, maintain_order=True):
        dataset, arch = key[1], key[2]
        own = set(part.filter(pl.col("published").is_not_null())
                  .select("published", "source").iter_rows())
        for (d, a, name, k), (value, source) in table.items():
            if (d, a) == (dataset, arch) and (name in ANCHORS or (value, source) in own):
                rows.append(dict(zip(PANEL, key, strict=True)) | {
                    "name": name if k is None else f"{name} K={k}", "value": value,
                    "source": source})
    return pl.DataFrame(rows, schema={**{c: df.schema[c] for c in PANEL}, "name": pl.String,
                                      "value": pl.Float64, "source": pl.String})


def budgets(df: pl.DataFrame) -> list[int]:
    return sorted(df["max_epochs"].drop_nulls().unique().to_list())


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    panels = df.select(PANEL).unique(maintain_order=True)
    lines = reference_lines(df)
    fig, axes = new_figure(panels.height, ncols=3, panel_size=(5.0, 3.6))
    models = df["model"].unique().to_list()
    for ax, key in zip(axes, panels.iter_rows(), strict=True):
        where = dict(zip(PANEL, key, strict=True))
        part = df.filter(*[pl.col(c).eq_missing(v) for c, v in where.items()])
        for i, ((label, model), line) in enumerate(part.group_by(["label", "model"],
                                                                 maintain_order=True)):
            x, y = line["max_epochs"].to_numpy(), line["mean"].to_numpy()
            err = np.vstack([y - line["ci_low"].to_numpy(), line["ci_high"].to_numpy() - y])
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label,
                        color=model_colour(model, models),
                        linestyle=("-", "--", ":", "-.")[i % 4])
        for ref in lines.filter(*[pl.col(c).eq_missing(v) for c, v in where.items()]
                                ).iter_rows(named=True):
            ax.axhline(ref["value"], color="0.4", linestyle="--", linewidth=0.8)
            ax.annotate(f"{ref['name']} converged {ref['value']:.2f}",
                        (0.01, ref["value"]), xycoords=("axes fraction", "data"),
                        fontsize="xx-small", va="bottom")
        ax.set_xticks(budgets(part))
        ax.set_title(" · ".join(str(v) for v in key), fontsize="small")
        ax.set_xlabel("max epochs (budget)")
        ax.set_ylabel("test IS LL (nats)")
        ax.legend(fontsize="xx-small")
    return fig


def _shown(df: pl.DataFrame) -> pl.DataFrame:
    def fmt(col: str) -> pl.Expr:
        return pl.col(col).round(2).cast(pl.String)

    return df.select(
        "study", "dataset", "arch", "kl_estimator", "label", "max_epochs", "seeds",
        pl.format("{} [{}, {}] ({})", fmt("mean"), fmt("ci_low"), fmt("ci_high"), "interval")
        .alias("test IS LL"),
        pl.when(pl.col("epochs_run_min") == pl.col("epochs_run_max"))
        .then(pl.col("epochs_run_min").cast(pl.String))
        .otherwise(pl.format("{}–{}", "epochs_run_min", "epochs_run_max")).alias("epochs run"),
        pl.when(pl.col("published").is_not_null())
        .then(pl.format("{} ({})", fmt("published"), "source")).otherwise(pl.lit(""))
        .alias("published converged"),
        fmt("gap").fill_null("").alias("gap"))


def notes(df: pl.DataFrame) -> list[str]:
    held = budgets(df)
    if len(held) < 2:
        return [f"This study holds one budget (max {held[0]} epochs): no curve to draw — "
                "grow it with `gmmpvae extend STUDY --max-epochs N` (docs/BUDGETS.md); the "
                "table lists each model's test IS LL at that budget beside the published "
                "converged numbers."]
    lines = [f"Budgets held: {', '.join(str(b) for b in held)} max epochs."]
    for r in df.filter(pl.col("gap").is_not_null()).sort("max_epochs").iter_rows(named=True):
        lines.append(f"{r['label']} ({r['kl_estimator']}) at {r['max_epochs']} epochs: "
                     f"{r['mean']:.2f}, {r['gap']:+.2f} nats from the published converged "
                     f"{r['published']:.2f} ({r['source']}).")
    return lines


@register(
    "budget_curves",
    title="Budget curves — test IS LL at every budget the study holds",
    caption=(
        "Per model (a configuration less seed and budget), the mean over seeds of the test IS "
        "LL at each budget (max epochs) with its 95% t interval over seeds (the range with "
        "fewer than 3 seeds); dashed: published converged numbers of the dataset and "
        "architecture (the VAE and VampPrior, and the published models the drawn ones are). "
        "'gap': the model's mean minus the published number it matches."
    ),
    prep=prep,
    absent="no completed trial has an IS log-likelihood",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    paths = write_table(df, _shown(df), out_dir, "budget_curves")
    if len(budgets(df)) < 2:
        return paths
    return save_figure(draw(df), out_dir, "budget_curves") + paths
