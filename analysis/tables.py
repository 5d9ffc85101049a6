"""Shared table pieces: "mean ± std" formatting and writing CSV, Markdown and HTML."""

from __future__ import annotations

import html
from pathlib import Path

import polars as pl


def fixed(column: str, digits: int = 2) -> pl.Expr:
    """A float as text with exactly ``digits`` decimals ("-85.30"); null stays null."""
    text = pl.col(column).round(digits).cast(pl.String)
    parts = text.str.split(".")
    decimals = parts.list.get(1, null_on_oob=True).fill_null("").str.pad_end(digits, "0")
    return (
        pl.when(pl.col(column).is_finite())
        .then(pl.concat_str(parts.list.first(), pl.lit("."), decimals))
        .otherwise(text)
    )


def mean_std(mean: str, std: str, digits: int = 2) -> pl.Expr:
    """"-85.32 ± 0.12"; just the mean when the std is null (one seed); "" when no mean."""
    return (
        pl.when(pl.col(mean).is_null())
        .then(pl.lit(""))
        .when(pl.col(std).is_null())
        .then(fixed(mean, digits))
        .otherwise(pl.format("{} ± {}", fixed(mean, digits), fixed(std, digits)))
    )


def number(column: str, digits: int = 2) -> pl.Expr:
    return fixed(column, digits).fill_null("")


def drop_single_study(shown: pl.DataFrame, df: pl.DataFrame) -> pl.DataFrame:
    """Hide the ``study`` column in a displayed table when only one study is reported."""
    if "study" in shown.columns and df["study"].drop_nulls().n_unique() <= 1:
        return shown.drop("study")
    return shown


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """CSV cannot hold lists: write them as "a, b, c"."""
    lists = [n for n, t in df.schema.items() if isinstance(t, pl.List)]
    return df.with_columns(
        pl.col(n).list.eval(pl.element().cast(pl.String)).list.join(", ") for n in lists
    )


def markdown(shown: pl.DataFrame) -> str:
    def cell(value: object) -> str:
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * shown.width]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.iter_rows()]
    return "\n".join(lines) + "\n"


def html_table(shown: pl.DataFrame) -> str:
    def cell(value: object) -> str:
        return "" if value is None else html.escape(str(value))

    head = "".join(f"<th>{cell(c)}</th>" for c in shown.columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in shown.iter_rows()
    )
    return f'<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n'


def write_table(raw: pl.DataFrame, shown: pl.DataFrame, out_dir: Path, name: str) -> list[Path]:
    """``tables/<name>.csv`` (the raw numbers), ``.md`` and ``.html`` (what a reader sees)."""
    folder = Path(out_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.csv", folder / f"{name}.md", folder / f"{name}.html"]
    _flat(raw).write_csv(paths[0])
    paths[1].write_text(markdown(shown), encoding="utf-8")
    paths[2].write_text(html_table(shown), encoding="utf-8")
    return paths
