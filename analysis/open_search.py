"""The open-search part of the report drawn by Optuna: did the search converge, where the good
region is, and the best trials by both rankings.

Three outputs on the search rebuilt from the Parquet results (`analysis.search_study`; a
grid's settings that vary are categorical parameters there, so grids get them too):

- ``search_history``: ``optuna.visualization.matplotlib.plot_optimization_history`` of the
  study's metric (the trials in the order they started);
- ``search_region``: ``plot_parallel_coordinate`` and ``plot_slice`` of every parameter
  against the metric, and ``plot_contour`` of the two parameters PED-ANOVA finds most
  important (`analysis.importances`);
- ``search_top``: the `TOP` best trials by the study's metric with their full configuration,
  their rank by the metric and by test IS LL side by side.

``prep`` is data (`search_study.to_frame`: one row per rebuilt trial); ``render`` rebuilds the
study from it (`search_study.from_frame`) and calls Optuna's functions, so a figure and the
table beside it come from the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from analysis import importances
from analysis.load import Frames
from analysis.registry import register
from analysis.search_study import from_frame, rebuild_all, to_frame
from analysis.style import save_figure, slug
from analysis.tables import write_table
from search_spaces.quiet import quiet_optuna

TOP = 10
# The configuration columns of the top-trials table (those that vary are shown).
CONFIG = ("arch", "latent_dim", "prior", "M", "pi", "K", "lr", "warmup_epochs", "kl_estimator",
          "seed", "epochs_run")


def optuna_figure(plot: Callable[..., Any], *args: Any, size: tuple[float, float] | None = None,
                  tight: bool = True, **kwargs: Any):  # -> Figure
    """One of ``optuna.visualization.matplotlib``'s plots as a Figure, without leaking its
    global state: Optuna draws with pyplot and sets the ggplot style (``plt.style.use``), so
    the call runs inside ``matplotlib.rc_context`` (the style reverts after it) and the caller
    closes the pyplot figure once saved (`save_optuna`). ``size`` (inches) replaces Optuna's
    default; ``tight`` lays the figure out again (not where Optuna placed a colour bar itself
    beside a row of panels: the slice plot)."""
    import matplotlib

    with matplotlib.rc_context(), quiet_optuna():
        axes = plot(*args, **kwargs)
        first = np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes
        fig = first.figure
        if size is not None:
            fig.set_size_inches(*size)
        if tight:
            fig.tight_layout()  # Optuna leaves the layout to pyplot's defaults: labels get cut
        else:
            fig.subplots_adjust(bottom=0.2, left=0.05)
    return fig


def save_optuna(fig: Any, out_dir: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    try:
        return save_figure(fig, out_dir, name)
    finally:
        plt.close(fig)


def prep(frames: Frames) -> pl.DataFrame:
    """One row per completed, rebuilt trial (`search_study.to_frame`); studies with fewer
    than two are left out."""
    df = to_frame(rebuild_all(frames))
    return df.filter(pl.len().over("study") >= 2)


def _params(part: pl.DataFrame) -> list[str]:
    return sorted({p for text in part["params"] for p in json.loads(text)})


def _name(kind: str, study: str, df: pl.DataFrame) -> str:
    return kind if df["study"].n_unique() <= 1 else f"{kind}_{slug(study)}"


def notes(df: pl.DataFrame) -> list[str]:
    out = []
    for (study,), part in df.group_by(["study"], maintain_order=True):
        best = part.sort("value", descending=part["direction"][0] == "maximize").row(0,
                                                                                    named=True)
        out.append(f"{study}: {part.height} completed trials rebuilt as an Optuna study; best "
                   f"by {best['metric']}: {best['trial_key']} ({best['value']:.4f}).")
        if part["order"][0] != "journal":
            out.append(f"{study}: no Optuna journal to read the order the trials were asked "
                       "in: they are in the order they started (trials that started together "
                       "may be swapped, and fANOVA can differ from a call on the Optuna "
                       "storage in its last digits).")
        if part["left_out"][0]:
            out.append(f"{study}: left out (not rebuilt): {part['left_out'][0]}.")
    return out


@register(
    "search_history",
    title="Did the search converge — optimisation history of the search metric",
    caption=(
        "Optuna's plot_optimization_history on the search rebuilt from the results: each "
        "completed trial's value of the study's metric in the order the trials started, and "
        "the best value so far."
    ),
    prep=prep,
    absent="no study has two completed trials",
    notes=notes,
)
def render_history(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    from optuna.visualization.matplotlib import plot_optimization_history

    paths = []
    for (study,), part in df.group_by(["study"], maintain_order=True):
        fig = optuna_figure(plot_optimization_history, from_frame(part),
                            target_name=part["metric"][0], size=(8.0, 4.5))
        paths += save_optuna(fig, out_dir, _name("search_history", study, df))
    return paths


@register(
    "search_region",
    title="Where the good region is — parallel coordinates, slices and a contour",
    caption=(
        "Optuna's plot_parallel_coordinate and plot_slice of every searched parameter against "
        "the study's metric (a parameter a trial does not have — π's fractions for M = 1 — is "
        "on the 'None' tick of the parallel coordinates and missing from its slice), and "
        "plot_contour of the two parameters PED-ANOVA finds most important for the metric."
    ),
    prep=prep,
    absent="no study has two completed trials",
)
def render_region(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    from optuna.visualization.matplotlib import (
        plot_contour,
        plot_parallel_coordinate,
        plot_slice,
    )

    paths = []
    for (study,), part in df.group_by(["study"], maintain_order=True):
        search = from_frame(part)
        metric = part["metric"][0]
        params = _params(part)
        fig = optuna_figure(plot_parallel_coordinate, search, params=params, target_name=metric,
                            size=(max(8.0, 1.4 * len(params)), 5.0))
        paths += save_optuna(fig, out_dir, _name("search_parallel", study, df))
        fig = optuna_figure(plot_slice, search, params=params, target_name=metric,
                            size=(max(8.0, 2.6 * len(params)), 4.0), tight=False)
        paths += save_optuna(fig, out_dir, _name("search_slice", study, df))
        top = list(importances.importances(search, "PED-ANOVA", None))[:2]
        if len(top) == 2:
            fig = optuna_figure(plot_contour, search, params=top, target_name=metric,
                                size=(6.5, 5.0))
            paths += save_optuna(fig, out_dir, _name("search_contour", study, df))
    return paths


def _text(column: str) -> pl.Expr:
    """A configuration column as shown: π rounded to 3 decimals, lr to 3 significant digits."""
    if column == "pi":
        return pl.col("pi").list.eval(pl.element().round(3).cast(pl.String)).list.join(", ")
    if column == "lr":
        return pl.col("lr").map_elements(lambda v: f"{v:.3g}", return_dtype=pl.String)
    return pl.col(column).cast(pl.String)


def prep_top(frames: Frames, top: int = TOP) -> pl.DataFrame:
    """The ``top`` best trials of each study by its metric, with their rank by the metric and
    by test IS LL (1 = best; ties share the smaller rank) and their configuration."""
    maximise = pl.col("direction") == "maximize"
    ranked = prep(frames).with_columns(
        pl.when(maximise).then(-pl.col("value")).otherwise(pl.col("value"))
        .rank("min").over("study").cast(pl.Int64).alias("rank_metric"),
        (-pl.col("test_ll")).rank("min").over("study").cast(pl.Int64).alias("rank_test_ll"),
    )
    config = frames.trials.select("study", "trial_key", *CONFIG)
    return (
        ranked.filter(pl.col("rank_metric") <= top)
        .join(config, on=["study", "trial_key"], how="left")
        .sort("study", "rank_metric", "rank_test_ll")
    )


@register(
    "search_top",
    title="The best configurations — by the search metric and by test IS LL",
    caption=(
        f"The {TOP} best completed trials by the study's metric (the value Optuna was told) "
        "with their rank by the metric and by test IS LL side by side and their full "
        "configuration (settings every trial shares are left out; the CSV has them all)."
    ),
    prep=prep_top,
    absent="no study has two completed trials",
)
def render_top(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    varying = [c for c in CONFIG if c != "pi" and df[c].cast(pl.String).n_unique() > 1]
    if df["pi"].list.eval(pl.element().round(3)).n_unique() > 1:
        varying.insert(varying.index("K") if "K" in varying else len(varying), "pi")
    shown = df.select(
        "study", "rank_metric", "rank_test_ll", "trial_key",
        pl.col("value").round(4).alias(df["metric"][0]),
        pl.col("test_ll").round(4).alias("test IS LL"),
        *[_text(c) for c in varying],
    ).rename({"rank_metric": f"rank by {df['metric'][0]}", "rank_test_ll": "rank by test IS LL"})
    if df["study"].n_unique() <= 1:
        shown = shown.drop("study")
    return write_table(df.drop("params", "distributions", "left_out", "order"), shown, out_dir,
                       "search_top")
