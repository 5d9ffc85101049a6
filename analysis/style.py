"""Shared plotting pieces: a lazily built Agg figure, saving as PNG and SVG, colours.

Figures are ``matplotlib.figure.Figure`` objects on an Agg canvas, never pyplot: nothing global
is touched, nothing is shown, and importing this module does not import matplotlib.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MODEL_COLOURS = {"VAE": "0.35", "Mix1": "C0", "Mix2": "C1", "Mix3": "C2"}
STUDY_LINESTYLES = ("-", "--", ":", "-.")
STUDY_MARKERS = ("o", "s", "^", "D")
CONSTRAINED_MAX_PANELS = 12


def new_figure(n_panels: int, *, ncols: int = 3, rows: int | None = None,
               panel_size: tuple[float, float] = (4.0, 3.0)) -> tuple[Figure, list[Axes]]:
    """A figure with ``n_panels`` axes on a grid (``rows`` fixes the row count)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_panels = max(n_panels, 1)
    if rows is None:
        ncols = min(ncols, n_panels)
        rows = math.ceil(n_panels / ncols)
    else:
        ncols = math.ceil(n_panels / rows)
    width, height = panel_size[0] * ncols, panel_size[1] * rows
    # constrained layout measures every tick label: worth it for a few panels only
    constrained = n_panels <= CONSTRAINED_MAX_PANELS
    fig = Figure(figsize=(width, height), layout="constrained" if constrained else None)
    if not constrained:
        fig.subplots_adjust(left=0.8 / width, right=1 - 0.2 / width, bottom=0.6 / height,
                            top=1 - 0.4 / height, wspace=0.35, hspace=0.6)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``figures/<name>.png`` and ``.svg`` under ``out_dir``; return both paths."""
    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    fig.savefig(paths[0], dpi=110)
    fig.savefig(paths[1])
    return paths


def model_colour(model: str, others: Sequence[str] = ()) -> Any:
    """Fixed colours for VAE/Mix1–3; other models take the next free colours in order."""
    if model in MODEL_COLOURS:
        return MODEL_COLOURS[model]
    rest = [m for m in sorted(set(others)) if m not in MODEL_COLOURS]
    index = rest.index(model) if model in rest else 0
    return f"C{(3 + index) % 10}"


def study_style(study: str, studies: Iterable[str]) -> tuple[str, str]:
    """(linestyle, marker) of one study among those compared."""
    ordered = list(dict.fromkeys(studies))
    i = ordered.index(study) if study in ordered else 0
    return STUDY_LINESTYLES[i % len(STUDY_LINESTYLES)], STUDY_MARKERS[i % len(STUDY_MARKERS)]


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x"
