"""Study status: which trials finished, failed, or are still missing.

A report of a running or crashed study is still useful, as long as it says what it is made of.
Every trial falls in one class (``outcome``):

- ``completed``: state COMPLETED with test results — the only trials the tables and figures use;
- ``no results``: state COMPLETED but no test metrics (evaluation not written yet);
- ``failed``: state ERROR (its ``error`` text is listed);
- ``missing``: RUNNING, PENDING, or NOT STARTED (planned by the grid in ``study.json``, no row
  yet) — not finished yet;
- ``stopped``: PRUNED (or TERMINATED) — stopped early by the scheduler (ASHA), no test metrics;
- ``unknown``: any other state.

Independently of the outcome, ``collapsed`` flags a completed pseudo-mixture trial whose prior
collapsed — its K members became alike (`models.collapse_rule`, applied by analysis.load to
the recorded spread ratio and responsibility perplexity of the best epoch, undecided before
the warm-up ends; null for the VAE and for schema-version-1 studies): its K and M did not
matter. The per-study table counts them and a note names them.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis.load import NOT_STARTED, Frames
from analysis.registry import register
from analysis.tables import drop_single_study, write_table
from models.collapse_rule import RULE_TEXT

OUTCOMES = ("completed", "no results", "failed", "missing", "stopped", "unknown")


def prep(frames: Frames) -> pl.DataFrame:
    state = pl.col("state")
    has_results = pl.col("test_elbo_bound").is_not_null() | pl.col("test_ll").is_not_null()
    return (
        frames.trials.lazy()
        .select(
            "study",
            "trial_key",
            "state",
            pl.when((state == "COMPLETED") & has_results)
            .then(pl.lit("completed"))
            .when(state == "COMPLETED")
            .then(pl.lit("no results"))
            .when(state == "ERROR")
            .then(pl.lit("failed"))
            .when(state.is_in(["RUNNING", "PENDING", NOT_STARTED]))
            .then(pl.lit("missing"))
            .when(state.is_in(["PRUNED", "TERMINATED"]))
            .then(pl.lit("stopped"))
            .otherwise(pl.lit("unknown"))
            .alias("outcome"),
            "label",
            "seed",
            "collapsed",
            # a traceback ends with the exception and its message: that line is the one to read
            pl.col("error").str.strip_chars().str.split("\n").list.last().str.slice(0, 200),
        )
        .sort(["study", "trial_key"])
        .collect()
    )


def counts(df: pl.DataFrame) -> dict[str, int]:
    """Number of trials per outcome (all outcomes present, zeros included)."""
    found = dict(df.group_by("outcome").len().iter_rows())
    return {o: int(found.get(o, 0)) for o in OUTCOMES}


def _keys(df: pl.DataFrame, outcome: str, at_most: int = 5) -> str:
    """The first trials of an outcome: "key STATE" ("study/key STATE" for several studies)."""
    rows = df.filter(pl.col("outcome") == outcome).select("study", "trial_key", "state").rows()
    several = df["study"].n_unique() > 1
    keys = [f"{s}/{k} {st}" if several else f"{k} {st}" for s, k, st in rows]
    more = f" and {len(keys) - at_most} more" if len(keys) > at_most else ""
    return ", ".join(keys[:at_most]) + more


def summary(df: pl.DataFrame) -> str:
    """One sentence: how many trials, and which are missing or failed."""
    c = counts(df)
    total = df.height
    if c["completed"] == total:
        return f"All {total} trials completed."
    parts = [f"{c['completed']} of {total} trials completed"]
    if c["failed"]:
        parts.append(f"{c['failed']} failed ({_keys(df, 'failed')})")
    if c["missing"]:
        parts.append(f"{c['missing']} missing ({_keys(df, 'missing')})")
    if c["no results"]:
        parts.append(f"{c['no results']} completed without test results")
    if c["stopped"]:
        parts.append(f"{c['stopped']} stopped early by the scheduler (pruned)")
    if c["unknown"]:
        parts.append(f"{c['unknown']} in an unknown state")
    return (
        "Partial results: " + "; ".join(parts) + f". Tables and figures use the "
        f"{c['completed']} completed trials."
    )


def collapse_notes(df: pl.DataFrame) -> list[str]:
    """One line per study with collapsed trials: how many of its flagged trials, which."""
    lines = []
    flagged = df.filter(pl.col("collapsed").is_not_null())
    for (study,), part in flagged.group_by(["study"], maintain_order=True):
        keys = part.filter(pl.col("collapsed"))["trial_key"].to_list()
        if keys:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            lines.append(f"{study}: {len(keys)} of {part.height} pseudo-mixture trials have a "
                         f"collapsed prior ({RULE_TEXT}): {', '.join(keys[:5])}{more}.")
    return lines


def problems(df: pl.DataFrame) -> pl.DataFrame:
    """The trials that are not in the tables, failures first."""
    order = {o: i for i, o in enumerate(("failed", "missing", "no results", "stopped", "unknown"))}
    return (
        df.filter(pl.col("outcome") != "completed")
        .with_columns(pl.col("outcome").replace_strict(order, default=9).alias("_order"))
        .sort(["_order", "study", "trial_key"])
        .drop("_order")
    )


@register(
    "status",
    title="Study status",
    caption=(
        "Trials by outcome; the list names every trial left out of the tables and figures "
        "(failed with its error message, still running or pending, or stopped by the scheduler)."
    ),
    prep=prep,
    absent="no trials",
    notes=collapse_notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    by_study = (
        df.group_by("study")
        .agg(pl.len().alias("trials"), *[(pl.col("outcome") == o).sum().alias(o) for o in OUTCOMES],
             pl.col("collapsed").fill_null(False).sum().alias("collapsed prior"))
        .sort("study")
    )
    paths = write_table(by_study, by_study, out_dir, "status")
    left_out = problems(df).drop("collapsed")
    if not left_out.is_empty():
        shown = drop_single_study(left_out.drop("outcome").rename({"error": "error (last line)"}),
                                  df)
        paths += write_table(left_out, shown, out_dir, "status_trials")
    return paths
