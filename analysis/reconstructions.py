"""Figures 5–9: test inputs with their reconstructions, and samples from the prior, per model.

Each trial folder holds ``reconstructions.png`` (test inputs above their reconstructions by the
best checkpoint) and ``samples.png`` (images decoded from prior samples), written at the end of
the trial; they are looked up in ``trial_dir``, then in ``STUDY/trials/<trial_key>`` (for a
study folder copied from the machine that ran it, and for a study on an object store: read
through its URI, `analysis.location`). Per model the first completed seed (lowest
seed, then trial key) is shown: its two images side by side, with the model as caption. The
images are copied next to the report (``reconstructions/``) so the report folder can be moved.
Models whose images cannot be found are left out; none found at all skips the output. The
composed figure shows at most ``MAX_ROWS`` models; every model's images are copied.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from analysis.load import COMPLETED, Frames, arch_order, model_order
from analysis.location import Location
from analysis.registry import register
from analysis.style import new_figure, save_figure, slug

IMAGES = ("reconstructions", "samples")
MAX_ROWS = 24


def _existing(*candidates: pl.Series) -> pl.Series:
    """Per row, the first candidate (a local path or a URI) that is a file (null when none is)."""
    found = [next((p for p in row if p is not None and Location.of(p).is_file()), None)
             for row in zip(*candidates, strict=True)]
    return pl.Series(found, dtype=pl.String)


def prep(frames: Frames) -> pl.DataFrame:
    keys = frames.model_keys
    first = (
        frames.trials.lazy()
        .filter(pl.col("state") == COMPLETED)
        # the first seed of each model
        .sort(["seed", "trial_key"], nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(pl.col("seed", "trial_key", "trial_path", "study_dir").first())
        .sort(["study", "dataset", arch_order(), model_order(), "K", "label"], nulls_last=True)
        .collect()
    )
    # which images are really there: in trial_dir as recorded, else in STUDY/trials/<key>
    # (a study folder copied from a cluster keeps the cluster's absolute trial_dir)
    moved = first.select(pl.format("{}/trials/{}", "study_dir", "trial_key"))[:, 0]
    found = first.with_columns(
        _existing(first["trial_path"] + f"/{name}.png", moved + f"/{name}.png").alias(name)
        for name in IMAGES
    ).drop("study_dir")
    return found.filter(pl.any_horizontal(pl.col(name).is_not_null() for name in IMAGES))


def notes(df: pl.DataFrame) -> list[str]:
    out = []
    missing = df.filter(pl.any_horizontal(pl.col(n).is_null() for n in IMAGES))
    if not missing.is_empty():
        out.append(f"{missing.height} model(s) have only one of the two images: "
                   + ", ".join(missing["label"].to_list()[:10]))
    if df.height > MAX_ROWS:
        out.append(f"The figure shows the first {MAX_ROWS} of {df.height} models; all images "
                   "are copied to reconstructions/.")
    return out


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    import matplotlib.image

    rows = df.head(MAX_ROWS)
    many = rows["study"].n_unique() > 1
    fig, axes = new_figure(2 * rows.height, ncols=2, panel_size=(4.0, 4.0))
    for i, row in enumerate(rows.iter_rows(named=True)):
        caption = f"{row['dataset']} · {row['label']} · seed {row['seed']}"
        if many:
            caption = f"{row['study']} · {caption}"
        for j, name in enumerate(IMAGES):
            ax = axes[2 * i + j]
            ax.set_axis_off()
            if row[name] is not None:
                image = matplotlib.image.imread(io.BytesIO(Location.of(row[name]).read_bytes()))
                ax.imshow(image, cmap="gray", interpolation="nearest")
            ax.set_title(f"{caption}\n{name}", fontsize="small")
    return fig


@register(
    "reconstructions",
    title="Figures 5–9 — reconstructions and samples",
    caption=(
        "Per model (first seed): test inputs and their reconstructions by the best checkpoint "
        "(left; inputs above, reconstructions below) and samples from the learned prior (right)."
    ),
    prep=prep,
    absent="no reconstructions.png or samples.png found in the completed trials' folders",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    paths = save_figure(draw(df), out_dir, "reconstructions")
    folder = Path(out_dir) / "reconstructions"
    folder.mkdir(parents=True, exist_ok=True)
    for row in df.iter_rows(named=True):
        for name in IMAGES:
            if row[name] is not None:
                stem = "_".join(slug(row[k].replace("π", "pi"))
                                for k in ("study", "dataset", "label"))
                target = folder / f"{stem}_{name}.png"
                target.write_bytes(Location.of(row[name]).read_bytes())
                paths.append(target)
    return paths
