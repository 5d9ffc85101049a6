"""Which trials are one configuration at several budgets (docs/BUDGETS.md).

A study grown with ``gmmpvae extend`` holds each configuration at every budget it was brought
to: one trial per (configuration, ``max_epochs``). The outputs that follow an effect or a model
across budgets need the configuration without its budget. Schema version 3 records it as
``config_key`` (`search_spaces.config_key`), but a study of versions 1 and 2 has no such
column and the analysis never imports ``search_spaces``; so the identity is derived here from
the columns every version has: the settings the claims pair on (`claims_design.SETTINGS`, as
`claims_design.design_frame` holds them) without `BUDGET_FIELDS`, and the seed. Two trials get
the same text exactly when they differ in nothing but ``max_epochs`` — which is what
``config_key`` hashes, read from the columns instead of the configuration.
"""

from __future__ import annotations

import polars as pl

from analysis import claims_design as cd
from analysis.load import COMPLETED

BUDGET_FIELDS = ("max_epochs",)  # search_spaces.base.BUDGET_FIELDS: what `extend` grows
_NULL = "∅"


def configuration(frame: pl.DataFrame, *, seed: bool = True) -> pl.Series:
    """One text per row of ``frame`` (a `claims_design.design_frame`): its settings less
    `BUDGET_FIELDS`, with the seed (a configuration) or without it (``seed=False``: a model,
    whose seeds are averaged over)."""
    columns = [c for c in cd.SETTINGS if c not in BUDGET_FIELDS] + (["seed"] if seed else [])
    return frame.select(pl.concat_str(
        [pl.col(c).cast(pl.String).fill_null(_NULL) for c in columns], separator="|"
    ).alias("configuration")).to_series()


def at_largest_budget(trials: pl.DataFrame) -> pl.DataFrame:
    """Each configuration's trial at its largest completed budget only (``trials``:
    `Frames.trials`). For the outputs drawn against the epoch: a larger budget's epoch rows
    hold every smaller budget's of the same configuration (continued from its checkpoint,
    docs/BUDGETS.md), so the smaller budgets would count each epoch again. A configuration with
    no completed trial keeps its rows (those outputs drop them); an extension under way keeps
    the smaller budget until the larger one completes."""
    if trials.is_empty() or trials["max_epochs"].drop_nulls().n_unique() < 2:
        return trials
    key = configuration(cd.design_frame(trials))
    return (trials.with_columns(key.alias("_configuration"))
            .filter(pl.col("max_epochs").is_null()
                    | (pl.col("max_epochs") == pl.col("max_epochs")
                       .filter(pl.col("state") == COMPLETED).max().over("_configuration")
                       .fill_null(pl.col("max_epochs"))))
            .drop("_configuration"))
