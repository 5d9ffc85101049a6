"""The registry of report outputs: adding a table or a figure is one decorated function.

Each output module defines ``prep(frames) -> pl.DataFrame`` (pure data: what is drawn, tested
without pixels) and a thin ``render(df, out_dir) -> list[Path]`` decorated with ``@register``::

    @register("figure3", title="Figure 3 — …", caption="…", prep=prep,
              absent="needs completed pseudo-mixture trials")
    def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
        return save_figure(draw(df), out_dir, "figure3")

and its module name is listed in ``OUTPUT_MODULES`` (that list is also the report's order). When
``prep`` returns no rows the report skips the output with the note "Skipped: <absent>"; an
optional ``notes(df) -> list[str]`` adds remarks (e.g. "no M = 3 trials: that panel is left out").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from analysis.load import Frames

Prep = Callable[["Frames"], pl.DataFrame]
Render = Callable[[pl.DataFrame, Path], list[Path]]
Notes = Callable[[pl.DataFrame], list[str]]

OUTPUT_MODULES = (
    "status",
    "claims",
    "over_training",
    "budget_curves",
    "budget_steps",
    "budget_verdicts",
    "open_search",
    "pi_ablation",
    "table1",
    "paper",
    "bound_gap",
    "kl_estimates",
    "figure2",
    "collapse",
    "figure3",
    "figure4",
    "reconstructions",
    "figure10",
)


@dataclass(frozen=True)
class Output:
    name: str
    title: str
    caption: str
    prep: Prep
    render: Render
    absent: str
    notes: Notes | None = None
    verdicts: bool = False  # a table of verdicts: its "no data" rows become one line (report)


_OUTPUTS: dict[str, Output] = {}


def register(
    name: str, *, title: str, caption: str, prep: Prep, absent: str, notes: Notes | None = None,
    verdicts: bool = False,
) -> Callable[[Render], Render]:
    """Register ``render`` (the decorated function) with its ``prep`` under ``name``;
    ``verdicts``: its table is one verdict per row (claim, verdict), whose "no data" rows the
    report folds into one line."""

    def decorator(render: Render) -> Render:
        _OUTPUTS[name] = Output(name, title, caption, prep, render, absent, notes, verdicts)
        return render

    return decorator


def outputs(names: Sequence[str] | None = None) -> list[Output]:
    """The registered outputs in report order (importing their modules), or the named ones."""
    for module in OUTPUT_MODULES:
        importlib.import_module(f"analysis.{module}")
    if names is None:
        return list(_OUTPUTS.values())
    unknown = sorted(set(names) - set(_OUTPUTS))
    if unknown:
        raise ValueError(
            f"unknown report output(s) {', '.join(unknown)}: expected some of "
            f"{', '.join(_OUTPUTS)}"
        )
    return [o for o in _OUTPUTS.values() if o.name in names]


def get(name: str) -> Output:
    return outputs([name])[0]
