"""Effects over training: every comparison of the claims section followed epoch by epoch on the
validation MC ELBO, and whether its sign and verdict at the budget were reached earlier
(docs/OVER_TRAINING.md).

**What is drawn** (descriptive: the validation MC ELBO, not the test IS LL the claims judge):
per comparison and epoch, the mean over seeds of the paired difference for the model an
e-epoch run returns, its interval over seeds and a verdict by the claims' rules; for claim (f)
the collapse rate and the spread ratio (`analysis.epoch_effects` computes them).

**The effect's last moves** (`last_slope`): the least-squares slope of the mean difference
per epoch over the last quarter of the budget's epochs (at least 2), beside the difference at
epoch E — a stable verdict is not a settled effect size.

**Stable since epoch E** (`stability`), per comparison and budget N: the state of an epoch is
(the sign of the mean difference, the verdict) — the verdict alone for claim (f). E is the
first epoch from which every epoch up to N has the state of epoch N. "stable since epoch E of
N" when E < N; "still moving" when E = N (epoch N − 1 had another sign or verdict); "no data"
when epoch N has no difference. A study holding several budgets (``gmmpvae extend``) has one
line per budget, each judged on its own trials' epochs 1 … N; the figure draws each comparison
at its largest budget, with the smaller budgets marked.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from analysis import claims
from analysis import claims_design as cd
from analysis import epoch_effects as ee
from analysis.budget_keys import configuration
from analysis.load import DEFAULT_PI_MARGIN, Frames
from analysis.registry import register
from analysis.style import new_figure, save_figure
from analysis.tables import write_table
from models.collapse_rule import COLLAPSE_SPREAD

STILL_MOVING = "still moving"
NO_DATA = "no data"
SCHEMA = {"series": pl.Int64, "claim": pl.String, "comparison": pl.String,
          "where": pl.String, "scope": pl.String, "budget": pl.String,
          "max_epochs": pl.Int64, "largest": pl.Boolean, "epoch": pl.Int64, "seeds": pl.Int64,
          "difference": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
          "level": pl.String, "sign": pl.Int64, "verdict": pl.String, "margin": pl.Float64,
          "spread": pl.Float64, "spread_low": pl.Float64, "spread_high": pl.Float64,
          "claims_verdict": pl.String}


def prep(frames: Frames) -> pl.DataFrame:
    """One row per comparison, budget and epoch (``SCHEMA``); ``series`` numbers a comparison
    across budgets (the same claim, name, scope without the budget and configurations less
    their budget), ``largest`` marks its largest budget. Empty without any validation MC
    ELBO. Raises `claims_design.DesignError` as the claims section does."""
    frame = cd.design_frame(frames.trials)
    values = ee.returned(frames.epochs, frame)
    if values.is_empty() or values["val_elbo_mc"].is_null().all():
        return pl.DataFrame(schema=SCHEMA)
    configs = configuration(frame)
    n_epochs = int(values["epoch"].max())
    elbo = ee.matrix(values, "val_elbo_mc", n_epochs, frame.height)
    found = np.isfinite(elbo) & frame["found"].to_numpy()[None, :]
    families: dict[tuple[str, str], list[cd.Comparison]] = {}
    for c in cd.design(frame):
        families.setdefault((c.claim, c.scope), []).append(c)
    rows = []
    for (claim, scope), family in families.items():
        margin = claims.study_setting(frames, scope, "pi_margin", DEFAULT_PI_MARGIN) \
            if claim == "c" else None  # the claims section's margin of the study
        rows += ee.family_rows(family, frame, configs, elbo, found, margin)
    rows += ee.collapse_rows(frame, configs, values)
    if not rows:
        return pl.DataFrame(schema=SCHEMA)
    df = pl.DataFrame(rows, infer_schema_length=None)
    series = df.select("claim", "comparison", "where", "configs").unique(maintain_order=True)
    df = df.join(series.with_row_index("series").with_columns(pl.col("series").cast(pl.Int64)),
                 on=["claim", "comparison", "where", "configs"], how="left",
                 maintain_order="left", nulls_equal=True)
    # a comparison without a difference at any epoch is left to the claims section's one
    # "no data" line (analysis.report.collapse_no_data)
    has_value = pl.any_horizontal(pl.col(c).is_not_null() for c in ("difference", "spread")
                                  if c in df.columns)
    df = df.filter(has_value.any().over("series"))
    if df.is_empty():
        return pl.DataFrame(schema=SCHEMA)
    df = with_claims_verdict(df.with_columns(
        (pl.col("max_epochs") == pl.col("max_epochs").max().over("series")).alias("largest")),
        frames)
    return df.select([pl.col(c).cast(t) if c in df.columns else pl.lit(None, t).alias(c)
                      for c, t in SCHEMA.items()])


def stable_since(states: list[tuple]) -> int:
    """The first epoch (from 1) from which every state up to the last equals the last."""
    since = len(states)
    while since > 1 and states[since - 2] == states[-1]:
        since -= 1
    return since


def stability(df: pl.DataFrame) -> pl.DataFrame:
    """One line per comparison and budget: its numbers at the budget's last epoch and whether
    the sign and verdict there were reached earlier (module docstring)."""
    out = []
    for _, part in df.group_by(["series", "max_epochs"], maintain_order=True):
        part = part.sort("epoch")
        last = part.row(-1, named=True)
        states = list(zip(part["sign"].to_list(), part["verdict"].to_list(), strict=True))
        n = last["max_epochs"]
        if last["seeds"] == 0 or last["difference"] is None:
            since, status = None, NO_DATA
        else:
            since = stable_since(states)
            status = (STILL_MOVING if since == n and n > 1 else
                      f"stable since epoch {since} of {n}")
        at = part.row(since - 1, named=True) if since else None
        out.append({k: last[k] for k in ("series", "claim", "comparison", "scope", "budget",
                                         "max_epochs", "largest", "seeds", "difference",
                                         "ci_low", "ci_high", "level", "sign", "verdict",
                                         "claims_verdict")}
                   | {"stable_since": since, "status": status,
                      "difference_then": at["difference"] if at else None,
                      "slope_last": last_slope(part["epoch"].to_numpy(),
                                               part["difference"].cast(pl.Float64)
                                               .fill_null(np.nan).to_numpy())})
    return pl.DataFrame(out, schema_overrides={"stable_since": pl.Int64,
                                               "difference": pl.Float64,
                                               "ci_low": pl.Float64, "ci_high": pl.Float64,
                                               "difference_then": pl.Float64,
                                               "slope_last": pl.Float64, "sign": pl.Int64})


def last_slope(epochs: np.ndarray, values: np.ndarray) -> float | None:
    """The least-squares slope (per epoch) of ``values`` over the last quarter of the epochs
    (at least the last 2 with a value): how fast the effect still moved at the budget's end,
    None with fewer than 2 values."""
    ok = np.isfinite(values)
    x, y = epochs[ok], values[ok]
    k = max(2, math.ceil(len(epochs) / 4))
    if len(x) < 2:
        return None
    return float(np.polyfit(x[-k:], y[-k:], 1)[0])


def with_claims_verdict(table: pl.DataFrame, frames: Frames) -> pl.DataFrame:
    """``claims_verdict``: the claims section's verdict on the test IS LL of the same
    comparison and budget (claim f: of the scope), beside the validation one."""
    verdicts = claims.prep(frames).select(
        "claim", "scope", pl.when(pl.col("claim") == "f").then(pl.lit(""))
        .otherwise(pl.col("comparison")).alias("key"), pl.col("verdict").alias("claims_verdict"))
    return table.with_columns(pl.when(pl.col("claim") == "f").then(pl.lit(""))
                              .otherwise(pl.col("comparison")).alias("key")).join(
        verdicts, on=["claim", "scope", "key"], how="left", maintain_order="left").drop("key")


def _fmt(col: str, digits: int = 3) -> pl.Expr:
    return pl.col(col).round(digits).cast(pl.String)


def shown(table: pl.DataFrame) -> pl.DataFrame:
    return table.select(
        "claim", "comparison", "scope", "seeds",
        pl.format("{} [{}, {}] ({})", _fmt("difference"), _fmt("ci_low"), _fmt("ci_high"),
                  "level").fill_null("").alias("Δ val MC ELBO at the budget's last epoch"),
        pl.col("verdict").alias("verdict (validation MC ELBO)"), "status",
        _fmt("difference_then").fill_null("").alias("Δ at the stable epoch"),
        _fmt("slope_last").fill_null("").alias("Δ per epoch, last quarter"),
        pl.col("claims_verdict").fill_null("").alias("claims section (test IS LL)"))


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    # a comparison without any difference is a table line ("no data"), not an empty panel
    drawn = df.filter(pl.col("largest") & (pl.col("difference").is_not_null().any()
                                           | pl.col("spread").is_not_null().any()).over("series"))
    table = stability(df)
    series = drawn["series"].unique(maintain_order=True).to_list()
    fig, axes = new_figure(len(series), ncols=4)
    for ax, s in zip(axes, series, strict=True):
        part = drawn.filter(pl.col("series") == s).sort("epoch")
        first = part.row(0, named=True)
        x = part["epoch"].to_numpy()
        collapse = first["claim"] == "f"
        y, low, high = (("spread", "spread_low", "spread_high") if collapse
                        else ("difference", "ci_low", "ci_high"))
        as_float = [part[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in (y, low, high)]
        ax.plot(x, as_float[0], color="C0", marker=".")
        ax.fill_between(x, as_float[1], as_float[2], color="C0", alpha=0.2, linewidth=0)
        if collapse:
            ax.set_yscale("log")
            ax.axhline(COLLAPSE_SPREAD, color="0.5", linestyle="--", linewidth=0.8)
            ax.set_ylabel("spread ratio (geometric mean)")
        else:
            ax.axhline(0.0, color="0.3", linewidth=0.8)
            if first["margin"] is not None:
                for m in (-first["margin"], first["margin"]):
                    ax.axhline(m, color="0.5", linestyle="--", linewidth=0.8)
            ax.set_ylabel("Δ validation MC ELBO (nats)")
        for n in df.filter((pl.col("series") == s) & ~pl.col("largest"))["max_epochs"].unique():
            ax.axvline(n, color="0.6", linestyle=":", linewidth=0.8)
        line = table.filter((pl.col("series") == s) & pl.col("largest")).row(0, named=True)
        status = f"{line['status']} ({line['verdict']})"
        ax.set_title(f"({first['claim']}) {first['comparison']}\n{first['where']}\n{status}",
                     fontsize="x-small")
        ax.set_xlabel("epoch")
    return fig


def notes(df: pl.DataFrame) -> list[str]:
    table = stability(df)
    counts = table.group_by("status").len()
    moving = int(counts.filter(pl.col("status") == STILL_MOVING)["len"].sum())
    stable = int(counts.filter(pl.col("status").str.starts_with("stable"))["len"].sum())
    budgets = sorted(df["max_epochs"].unique().to_list())
    return [
        "Validation MC ELBO, not IS LL: each comparison of the claims section (claim d "
        "excepted) on the estimator-free validation MC ELBO of the model an e-epoch run "
        "returns (its best epoch by validation loss up to e), paired by seed as the claims "
        "pair them; interval over seeds only (no per-image validation values), verdict by the "
        "claims' rules. Claim (f): the collapse rate per epoch (drawn: the spread ratio). "
        "'stable since epoch E of N': from epoch E on, the sign and the verdict are those of "
        "the budget's last epoch N; 'still moving': epoch N − 1 had another sign or verdict "
        "(docs/OVER_TRAINING.md).",
        f"Budgets held: {', '.join(f'max {b} epochs' for b in budgets)}"
        + ("; each comparison drawn at its largest, the smaller budgets dotted."
           if len(budgets) > 1 else "."),
        f"{stable} of {table.height} comparison-budget lines stable before their last epoch, "
        f"{moving} still moving; listed below: those still moving and those whose validation "
        "verdict is not the claims section's.",
        *[f"({r['claim']}) {r['comparison']} — {r['scope']}: {r['status']} "
          f"(validation: {r['verdict']}; claims section on the test IS LL: "
          f"{r['claims_verdict'] or '–'})." for r in table.filter(
              (pl.col("status") == STILL_MOVING)
              | (pl.col("verdict") != pl.col("claims_verdict"))).iter_rows(named=True)],
    ]


@register(
    "over_training",
    title="Effects over training — every claim comparison on the validation MC ELBO, epoch "
          "by epoch",
    caption=(
        "Descriptive, on the validation MC ELBO (not the test IS LL): per comparison of the "
        "claims section, the mean over seeds of the paired per-seed difference at each epoch, "
        "for the model an e-epoch run returns (its best epoch so far by validation loss), with "
        "its interval over seeds (95%, 90% for claim c, the range with fewer than 3 seeds); "
        "dashed lines: claim c's margin. Claim (f): the spread ratio of the pseudo-inputs "
        "(geometric mean, interval over seeds; dashed: the collapse threshold). Each panel's "
        "title says whether the sign and verdict at the budget were reached earlier; the "
        "table has one line per comparison and budget, beside the claims section's verdict."
    ),
    prep=prep,
    absent="no per-epoch validation MC ELBO (a study written before it was recorded, or no "
           "completed trial)",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    table = stability(df)
    drawn = df["difference"].is_not_null().any() or df["spread"].is_not_null().any()
    paths = save_figure(draw(df), out_dir, "over_training") if drawn else []
    paths += write_table(table, shown(table), out_dir, "over_training")
    per_epoch = Path(out_dir) / "tables" / "over_training_epochs.csv"
    df.write_csv(per_epoch)
    return [*paths, per_epoch]
