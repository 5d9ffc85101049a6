"""Figure 4: the log-likelihood for each setting of the mixture coefficients π.

One panel per M ≥ 2 (the paper's M = 2 and M = 3); in each, the π settings on the x axis
(ordered from the most balanced, uniform, to the most skewed: by the largest weight) and one
line with error bars per experiment — dataset × architecture × K (× study and varying settings)
— in its own colour: mean IS LL over seeds with its 95% Student-t interval over the seeds
(each seed one training run: half-width t_{0.975, n−1} · s / √n; no bar with one seed; the
table lists n, the interval and the sample std). Completed
pseudo-mixture trials only, and only experiments that tried at least two π settings (a single
setting is no comparison). An M of 2 or 3 without such trials is noted, its panel left out.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
from scipy import stats

from analysis.load import COMPLETED, Frames
from analysis.registry import register
from analysis.style import new_figure, save_figure
from analysis.tables import write_table

EXPERIMENT = ["study", "dataset", "arch", "K", "variant"]


def _t975(n: int) -> float:
    """Student's t quantile 0.975 with n − 1 df (nan for one seed)."""
    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.nan
PAPER_M = (2, 3)


def prep(frames: Frames) -> pl.DataFrame:
    return (
        frames.trials.lazy()
        .filter(
            (pl.col("state") == COMPLETED)
            & (pl.col("prior") == "pseudo_mixture")
            & (pl.col("M") >= 2)
            & pl.col("test_ll").is_not_null()
        )
        # experiments that compare at least two settings of π
        .filter(pl.col("pi_label").n_unique().over([*EXPERIMENT, "M"]) >= 2)
        # mean and sample std over seeds per (experiment, π)
        .group_by(["M", *EXPERIMENT, "pi_label"])
        .agg(
            pl.col("pi_max").first(),
            pl.col("pi_uniform").first(),
            pl.col("test_ll").mean().alias("mean"),
            pl.col("test_ll").std(ddof=1).alias("std"),
            pl.len().alias("n_seeds"),
        )
        .with_columns(
            (pl.col("std") / pl.col("n_seeds").sqrt()
             * pl.col("n_seeds").map_elements(_t975, return_dtype=pl.Float64)).alias("half"),
        )
        .with_columns((pl.col("mean") - pl.col("half")).alias("ci_low"),
                      (pl.col("mean") + pl.col("half")).alias("ci_high"))
        .with_columns(
            pl.concat_str(
                [
                    pl.col("dataset"),
                    pl.col("arch"),
                    pl.format("K={}", pl.col("K")),
                    pl.col("variant"),
                    pl.when(pl.col("study").n_unique() > 1).then(pl.format("({})", "study")),
                ],
                separator=" ",
                ignore_nulls=True,
            )
            .str.strip_chars()
            .str.replace_all("  +", " ")
            .alias("experiment")
        )
        .sort(["M", "experiment", "pi_max", "pi_label"])
        .collect()
    )


def notes(df: pl.DataFrame) -> list[str]:
    present = set(df["M"].to_list())
    return [
        f"No completed M = {m} trials with at least two mixture-coefficient settings: "
        "that panel is left out."
        for m in PAPER_M
        if m not in present
    ]


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    ms = sorted(df["M"].unique().to_list())
    experiments = df["experiment"].unique().sort().to_list()
    colour = {e: f"C{i % 10}" for i, e in enumerate(experiments)}
    fig, axes = new_figure(len(ms), ncols=2, panel_size=(5.5, 3.8))
    for ax, m in zip(axes, ms, strict=True):
        part = df.filter(pl.col("M") == m)
        # the x axis: the π settings of this M, balanced first
        settings = part.group_by("pi_label").agg(pl.col("pi_max").first()).sort(
            ["pi_max", "pi_label"])["pi_label"].to_list()
        position = {s: i for i, s in enumerate(settings)}
        for (experiment,), line in part.group_by(["experiment"], maintain_order=True):
            x = [position[s] for s in line["pi_label"]]
            half = line["half"].fill_nan(0.0).fill_null(0.0).to_numpy()
            ax.errorbar(x, line["mean"].to_numpy(), yerr=half, marker="o",
                        color=colour[experiment], label=experiment)
        ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right", fontsize="small")
        ax.set_title(f"M = {m}")
        ax.set_xlabel("mixture coefficients π")
        ax.set_ylabel("IS log-likelihood (nats)")
        ax.legend(fontsize="small")
    return fig


@register(
    "figure4",
    title="Figure 4 — log-likelihood against the mixture coefficients π",
    caption=(
        "IS log-likelihood (mean over seeds with its 95% t interval over the seeds, each seed "
        "one training run) for each setting of the mixture "
        "coefficients, one panel per M, one colour per experiment (dataset × architecture × K); "
        "settings ordered from uniform to the most skewed."
    ),
    prep=prep,
    absent="no completed pseudo-mixture trials with M ≥ 2 and at least two π settings",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    def fmt(col: str) -> pl.Expr:
        return pl.col(col).round(3).cast(pl.String).fill_null("")

    shown = df.select("M", "experiment", "pi_label", "n_seeds", fmt("mean").alias("IS LL mean"),
                      pl.format("[{}, {}]", fmt("ci_low"), fmt("ci_high"))
                      .alias("95% t interval over seeds"), fmt("std").alias("sample std"))
    return save_figure(draw(df), out_dir, "figure4") + write_table(df, shown, out_dir, "figure4")
