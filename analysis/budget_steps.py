"""Budget steps: what each budget of a study cost — the trials trained for it, the trial-epochs
and the time (docs/BUDGETS.md).

A study grown with ``gmmpvae extend`` holds every configuration at each budget (``max_epochs``)
it was brought to. Per study and budget, from ``trials.parquet`` and ``epochs.parquet``:

- ``trials``: the budget's rows; ``continued`` (trained on from a smaller budget's last
  checkpoint: ``continued_from``), ``new`` (trained from scratch: the first budget, or new
  seeds), ``carried`` (ended before a smaller budget and repeated here: ``carried_from``; they
  cost nothing) and ``from_budget``, the budget the continued trials started from;
- ``trial_epochs``: the epochs trained for this budget — a continued trial's epochs past its
  source's ``epochs_run`` (its epoch rows include the source's), a new trial's all;
- ``train_seconds``: those epochs' ``seconds`` summed; ``eval_seconds``: the trained trials'
  test evaluations summed (compute time, added over the trials that ran side by side);
- ``wall_seconds``: the wall clock during which at least one of the budget's trained trials
  ran — the union of their ``started_at`` … ``ended_at`` intervals, so that the gap between
  two runs at one budget (the first run and a later ``--seeds`` step) does not count, while a
  trial that crashed spans its wait for ``gmmpvae resume`` (the note says so);
  ``seconds_per_trial_epoch``: ``train_seconds`` over ``trial_epochs``.

Errored and pruned trials count: their time was spent. A study of schema version 1 or 2 (no
``continued_from``) reads as one budget of new trials.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis.load import NOT_STARTED, Frames
from analysis.registry import register
from analysis.tables import write_table

SCHEMA = {"study": pl.String, "max_epochs": pl.Int64, "from_budget": pl.Int64,
          "trials": pl.Int64, "continued": pl.Int64, "new": pl.Int64, "carried": pl.Int64,
          "trial_epochs": pl.Int64, "train_seconds": pl.Float64, "eval_seconds": pl.Float64,
          "wall_seconds": pl.Float64, "seconds_per_trial_epoch": pl.Float64}


def _trained_epochs(trials: pl.DataFrame, epochs: pl.LazyFrame) -> pl.DataFrame:
    """Per trained trial: the epochs it ran for its own budget and their summed seconds."""
    source = trials.select(pl.col("study"), pl.col("trial_key").alias("continued_from"),
                           pl.col("epochs_run").alias("source_epochs"),
                           pl.col("max_epochs").alias("source_budget"))
    own = (trials.join(source, on=["study", "continued_from"], how="left")
           .with_columns(pl.col("source_epochs").fill_null(0)))
    seconds = (epochs.join(own.lazy().select("study", "trial_key", "source_epochs"),
                           on=["study", "trial_key"])
               .filter(pl.col("epoch") > pl.col("source_epochs"))
               .group_by("study", "trial_key")
               .agg(pl.col("seconds").sum().alias("step_seconds")).collect())
    return (own.join(seconds, on=["study", "trial_key"], how="left")
            .with_columns((pl.col("epochs_run").fill_null(0) - pl.col("source_epochs"))
                          .clip(lower_bound=0).alias("step_epochs")))


def covered(starts: pl.Series, ends: pl.Series) -> float | None:
    """Seconds covered by the union of the intervals [start, end] (rows with a null skipped)."""
    spans = sorted((s, e) for s, e in zip(starts, ends, strict=True)
                   if s is not None and e is not None and e >= s)
    if not spans:
        return None
    total, (low, high) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s > high:
            total, low, high = total + (high - low).total_seconds(), s, e
        else:
            high = max(high, e)
    return total + (high - low).total_seconds()


def prep(frames: Frames) -> pl.DataFrame:
    """One row per study and budget (module docstring), smallest budget first."""
    rows = frames.trials.filter(pl.col("max_epochs").is_not_null()
                                & (pl.col("state") != NOT_STARTED))
    if rows.is_empty():
        return pl.DataFrame(schema=SCHEMA)
    carried = pl.col("carried_from").is_not_null()
    trained = _trained_epochs(rows.filter(~carried), frames.epochs)
    continued = pl.col("continued_from").is_not_null()
    out = trained.group_by("study", "max_epochs").agg(
        pl.col("source_budget").drop_nulls().max().alias("from_budget"),
        pl.len().alias("trained"), continued.sum().alias("continued"),
        (~continued).sum().alias("new"),
        pl.col("step_epochs").sum().alias("trial_epochs"),
        pl.col("step_seconds").sum().alias("train_seconds"),
        pl.col("eval_seconds").sum().alias("eval_seconds"),
        pl.col("started_at"), pl.col("ended_at"))
    out = out.with_columns(pl.Series("wall_seconds", [
        covered(s, e) for s, e in zip(out["started_at"], out["ended_at"], strict=True)],
        pl.Float64))
    counts = rows.group_by("study", "max_epochs").agg(
        pl.len().alias("trials"), carried.sum().alias("carried"))
    out = counts.join(out, on=["study", "max_epochs"], how="left").with_columns(
        pl.col("continued", "new", "trial_epochs").fill_null(0),
        pl.when(pl.col("trial_epochs") > 0)
        .then(pl.col("train_seconds") / pl.col("trial_epochs"))
        .alias("seconds_per_trial_epoch"))
    return out.select({c: pl.col(c).cast(t) for c, t in SCHEMA.items()}.values()).sort(
        "study", "max_epochs")


def duration(seconds: float | None) -> str:
    """``1 h 02 min``, ``26 min 04 s``, ``41 s``; ``—`` for none."""
    if seconds is None:
        return "—"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def _shown(df: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame({
        "study": df["study"],
        "budget": [f"{a} → {b}" if a is not None else f"scratch → {b}"
                   for a, b in zip(df["from_budget"], df["max_epochs"], strict=True)],
        "trials": df["trials"], "continued": df["continued"], "new": df["new"],
        "carried": df["carried"], "trial-epochs": df["trial_epochs"],
        "wall clock": [duration(v) for v in df["wall_seconds"]],
        "training (summed)": [duration(v) for v in df["train_seconds"]],
        "evaluation (summed)": [duration(v) for v in df["eval_seconds"]],
        "s per trial-epoch": df["seconds_per_trial_epoch"].round(2),
    })


def notes(df: pl.DataFrame) -> list[str]:
    lines = [
        f"{r['study']}: max {r['max_epochs']} epochs"
        + (f" (from {r['from_budget']})" if r["from_budget"] is not None else "")
        + f" took {duration(r['wall_seconds'])} of wall clock for {r['trial_epochs']} "
          f"trial-epochs" + (f", {r['carried']} trial{'s' if r['carried'] > 1 else ''} carried"
             if r["carried"] else "") + "."
        for r in df.iter_rows(named=True)]
    return lines + ["Wall clock: the time during which at least one of the budget's trials ran "
                    "(a trial that crashed counts its wait for `gmmpvae resume`); it depends on "
                    "the machine, the trials run side by side and what else ran on it."]


@register(
    "budget_steps",
    title="Budget steps — what each budget cost",
    caption=(
        "Per study and budget (max epochs): its trials — continued from the smaller budget's "
        "checkpoints, new from scratch, or carried (ended earlier, repeated at no cost) — the "
        "trial-epochs trained for it, its wall clock (while any of its trials ran) "
        "and the training and evaluation time summed over its trials."
    ),
    prep=prep,
    absent="no trial has run",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    return write_table(df, _shown(df), out_dir, "budget_steps")
