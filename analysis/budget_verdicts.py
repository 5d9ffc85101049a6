"""Verdicts by budget: every comparison of the claims section at each budget the study holds,
side by side, and which verdicts changed between budgets (docs/OVER_TRAINING.md).

The claims section judges each comparison within one budget (its scope names it: max epochs,
training images, warm-up, IS samples, test images). A study grown with ``gmmpvae extend``
holds the same comparisons at several ``max_epochs``; this output lines them up: a
comparison is one ``series`` across budgets when its claim, its name and its scope less the
budget's max epochs are the same (`budget_parts` takes ``max N epochs`` and the ``early
training`` mark, which depends on N, out of the budget label `claims_design.budget_expr`
writes; claim (f), whose comparison text is its result, is one series per scope). Per series
and budget: the claims section's difference, interval and verdict, as it computed them —
nothing is re-tested here — and whether the verdict changed from the series' previous budget.
Each budget's verdicts hold at that budget only.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from analysis import claims
from analysis import claims_stats as cs
from analysis.load import Frames
from analysis.registry import register
from analysis.tables import write_table

# claims whose comparison text is their result ("27 of 27 collapsed (…)"): one series per
# claim and scope under this name, the result shown in the cell
BY_RESULT = {"f": "collapse rate"}
_MAX = re.compile(r"^max (\d+|all) epochs, ")
_EARLY = ", early training"
SCHEMA = {"series": pl.Int64, "claim": pl.String, "statement": pl.String,
          "comparison": pl.String, "where": pl.String, "budget_rest": pl.String,
          "max_epochs": pl.Int64,
          "difference": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
          "verdict": pl.String, "result": pl.String, "changed": pl.Boolean}


def budget_parts(budget: str) -> tuple[int | None, str]:
    """``"max 10 epochs, 4000 train images, …, early training"`` → ``(10, "4000 train
    images, …")``: the max epochs and the rest of the budget label, which a series shares."""
    match = _MAX.match(budget)
    if match is None:
        return None, budget
    rest = budget[match.end():]
    rest = rest[:-len(_EARLY)] if rest.endswith(_EARLY) else rest
    return (None if match.group(1) == "all" else int(match.group(1))), rest


def series_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """The claims rows with ``max_epochs``, ``where`` (the scope, its budget less the max
    epochs), ``result`` (the comparison text) and a ``series`` number; only the series held
    at two budgets or more, and no "no data" rows."""
    parts = [budget_parts(b) for b in rows["budget"].to_list()]
    where = [scope.replace(budget, f"budget: {rest}") if budget else scope
             for scope, budget, (_, rest) in zip(rows["scope"], rows["budget"], parts,
                                                  strict=True)]
    frame = rows.with_columns(
        pl.Series("max_epochs", [p[0] for p in parts], pl.Int64),
        pl.Series("where", where, pl.String),
        pl.Series("budget_rest", [p[1] if b else None for p, b in zip(
            parts, rows["budget"], strict=True)], pl.String),
        pl.col("comparison").alias("result"),
        pl.when(pl.col("claim").is_in(list(BY_RESULT)))
        .then(pl.col("claim").replace_strict(BY_RESULT, default=None))
        .otherwise(pl.col("comparison")).alias("comparison"))
    frame = frame.filter(pl.col("max_epochs").is_not_null()
                         & (pl.col("verdict") != cs.NO_DATA))
    key = pl.concat_str(["claim", "comparison", "where"], separator="\x1f")
    return (frame.with_columns(key.rank("dense").cast(pl.Int64).alias("series"))
            .filter(pl.col("max_epochs").n_unique().over("series") > 1)
            .sort("series", "max_epochs"))


def prep(frames: Frames) -> pl.DataFrame:
    """One row per comparison series and budget (``SCHEMA``); ``changed``: the verdict differs
    from the one at the series' previous budget. Empty unless a comparison is held at two
    budgets or more."""
    rows = claims.prep(frames)
    if rows.is_empty():
        return pl.DataFrame(schema=SCHEMA)
    frame = series_frame(rows)
    frame = frame.with_columns(
        (pl.col("verdict") != pl.col("verdict").shift(1).over("series"))
        .fill_null(False).alias("changed"))
    return frame.select([pl.col(c).cast(t) for c, t in SCHEMA.items()])


def cell(r: dict) -> str:
    """One budget's verdict with the claims section's difference and interval (or result)."""
    if r["claim"] in BY_RESULT:
        return f"{r['verdict']}: {r['result']}"
    if r["difference"] is None:
        return r["verdict"]
    interval = "" if r["ci_low"] is None else f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
    return f"{r['verdict']}: {r['difference']:+.2f}{interval}"


def path(verdicts: list[str], budgets: list[int]) -> str:
    """``inconclusive (10) → contradicted (20, 40)``: the verdicts in budget order, a run of
    the same verdict merged."""
    runs: list[tuple[str, list[int]]] = []
    for v, b in zip(verdicts, budgets, strict=True):
        if runs and runs[-1][0] == v:
            runs[-1][1].append(b)
        else:
            runs.append((v, [b]))
    return " → ".join(f"{v} ({', '.join(str(b) for b in bs)})" for v, bs in runs)


def _shown(df: pl.DataFrame) -> pl.DataFrame:
    budgets = sorted(df["max_epochs"].unique().to_list())
    out = []
    for _, part in df.group_by("series", maintain_order=True):
        first = part.row(0, named=True)
        at = {r["max_epochs"]: cell(r) for r in part.iter_rows(named=True)}
        out.append({"claim": first["claim"], "comparison": first["comparison"],
                    "where": first["where"],
                    **{f"max {b} epochs": at.get(b, "") for b in budgets},
                    "verdicts": path(part["verdict"].to_list(), part["max_epochs"].to_list())})
    return pl.DataFrame(out)


def notes(df: pl.DataFrame) -> list[str]:
    budgets = sorted(df["max_epochs"].unique().to_list())
    series = df.group_by("series", maintain_order=True).agg(
        pl.col("claim", "comparison", "where", "budget_rest").first(), "verdict", "max_epochs",
        pl.col("changed").any())
    moved = series.filter(pl.col("changed"))
    rests = series["budget_rest"].unique()
    # the budget every series shares is said once, and left out of each line
    shared = f" · budget: {rests[0]}" if len(rests) == 1 and rests[0] is not None else ""
    lines = [f"Budgets held: {', '.join(str(b) for b in budgets)} max epochs"
             + (f" ({rests[0]} at each)" if shared else "")
             + f"; {moved.height} of {series.height} comparisons changed verdict between "
             "budgets" + (":" if moved.height else ".")]
    lines += [f"({r['claim']}) {r['comparison']} — {r['where'].replace(shared, '')}: "
              f"{path(r['verdict'], r['max_epochs'])}." for r in moved.iter_rows(named=True)]
    lines.append("Each verdict holds at its own budget (the claims section's rules, seeds "
                 "and Holm families within a budget); one that holds at every budget here is "
                 "still a statement about these budgets, not about convergence.")
    return lines


@register(
    "budget_verdicts",
    title="Verdicts by budget — each comparison at every budget the study holds",
    caption=(
        "Every comparison of the claims section at each budget (max epochs) the study holds, "
        "with the claims section's difference in test IS LL (nats), its interval and verdict "
        "at that budget (claim f: its collapse count); 'verdicts' follows the verdict across "
        "budgets (the budgets in brackets)."
    ),
    prep=prep,
    absent="needs a comparison held at two budgets or more (`gmmpvae extend`)",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    return write_table(df, _shown(df), out_dir, "budget_verdicts")
