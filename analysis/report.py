"""Assemble the report: run every registered output, then write ``index.html`` and ``report.md``.

Layout of the report folder: ``index.html`` and ``report.md`` at the top, ``tables/`` (CSV with
the raw numbers, Markdown and HTML as shown), ``figures/`` (PNG and SVG), ``reconstructions/``
(the trial images). An output that fails is reported in its section (and in ``Report.failed``)
without losing the others.

The report says only what the study can answer: an output whose data is absent (it does not
apply to the study's design, e.g. Figure 3 without two K) gets no section of its own — all such
outputs are listed once, under "Not applicable to this study", each with its reason; and in a
table of verdicts (rows with ``claim`` and ``verdict`` columns: the claims section) the claims
with no data collapse into one line instead of a row each.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from analysis import registry, status
from analysis.claims_stats import NO_DATA
from analysis.load import Frames


@dataclass
class Section:
    name: str
    title: str
    caption: str
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None


@dataclass
class Report:
    out_dir: Path
    index: Path
    markdown: Path
    summary: str
    sections: list[Section]

    @property
    def failed(self) -> list[Section]:
        return [s for s in self.sections if s.error is not None]

    @property
    def skipped(self) -> list[Section]:
        return [s for s in self.sections if s.skipped is not None]


def run_outputs(frames: Frames, out_dir: Path, names: list[str] | None = None) -> list[Section]:
    """prep → render for each registered output (all of them, or ``names``)."""
    sections = []
    for output in registry.outputs(names):
        section = Section(output.name, output.title, output.caption)
        try:
            df, collapsed = output.prep(frames), None
            if output.verdicts:
                df, collapsed = collapse_no_data(df)
            if df.is_empty():
                section.skipped = f"Skipped: {collapsed or output.absent}."
            else:
                section.files = output.render(df, out_dir)
                section.notes = [*([collapsed] if collapsed else []),
                                 *(output.notes(df) if output.notes else [])]
        except Exception as exc:  # one broken output must not cost the reader the others
            section.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        sections.append(section)
    return sections


def collapse_no_data(df: pl.DataFrame) -> tuple[pl.DataFrame, str | None]:
    """A table of verdicts without its "no data" rows, and the one line that replaces them
    ("No data for claims (a), (b): …"); other tables unchanged (None)."""
    if not {"claim", "verdict"} <= set(df.columns):
        return df, None
    empty = df.filter(pl.col("verdict") == NO_DATA)
    if empty.is_empty():
        return df, None
    names = ", ".join(f"({c})" for c in empty["claim"].unique(maintain_order=True))
    plural = "s" if empty["claim"].n_unique() > 1 else ""
    return (df.filter(pl.col("verdict") != NO_DATA),
            f"No data for claim{plural} {names}: the study has no trials for their comparisons")


def build(frames: Frames, out_dir: Path | str, names: list[str] | None = None) -> Report:
    """Write the whole report for ``frames`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = status.summary(status.prep(frames))
    sections = run_outputs(frames, out_dir, names)
    index = out_dir / "index.html"
    markdown = out_dir / "report.md"
    index.write_text(_html(frames, summary, sections, out_dir), encoding="utf-8")
    markdown.write_text(_markdown(frames, summary, sections, out_dir), encoding="utf-8")
    return Report(out_dir, index, markdown, summary, sections)


def _rel(path: Path, out_dir: Path) -> str:
    return path.relative_to(out_dir).as_posix()


def _is_figure(path: Path) -> bool:
    return path.parent.name == "figures" and path.suffix == ".png"


def _title(frames: Frames) -> str:
    return "GMMpVAE study report: " + ", ".join(frames.studies["study"].to_list())


def _generated() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
.banner { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
.note { color: #555; } .error { color: #b00020; }
.caption { font-style: italic; }
"""


def _applicable(sections: list[Section]) -> tuple[list[Section], list[Section]]:
    """(sections shown, sections listed once as not applicable: skipped for absent data)."""
    return ([s for s in sections if s.skipped is None],
            [s for s in sections if s.skipped is not None])


def _html(frames: Frames, summary: str, sections: list[Section], out_dir: Path) -> str:
    esc = html.escape
    shown, absent = _applicable(sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(_title(frames))}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(_title(frames))}</h1>",
        f"<p class=\"note\">Generated {_generated()} from: "
        + ", ".join(
            f"<code>{esc(p)}</code> ({esc(s)})"
            for s, p in frames.studies.select("study", "path").iter_rows()
        )
        + "</p>",
        f'<p class="banner">{esc(summary)}</p>',
        *[f'<p class="banner">{esc(w)}</p>' for w in frames.warnings],
        "<h2>Contents</h2><ul>"
        + "".join(f'<li><a href="#{s.name}">{esc(s.title)}</a></li>' for s in shown)
        + (f'<li><a href="#not-applicable">Not applicable to this study ({len(absent)})</a>'
           "</li>" if absent else "")
        + "</ul>",
    ]
    if absent:
        parts.append('<section id="not-applicable"><h2>Not applicable to this study</h2><ul>'
                     + "".join(f'<li class="note">{esc(s.title)}: {esc(s.skipped or "")}</li>'
                               for s in absent) + "</ul></section>")
    for s in shown:
        parts.append(f'<section id="{s.name}"><h2>{esc(s.title)}</h2>')
        parts.append(f'<p class="caption">{esc(s.caption)}</p>')
        if s.error:
            parts.append(f'<p class="error">This output failed: {esc(s.error)}</p>')
        parts += [f'<p class="note">{esc(n)}</p>' for n in s.notes]
        others = []
        for path in s.files:
            if path.suffix == ".html":
                parts.append(path.read_text(encoding="utf-8"))
            elif _is_figure(path):
                svg = path.with_suffix(".svg")
                link = f' (<a href="{_rel(svg, out_dir)}">SVG</a>)' if svg in s.files else ""
                parts.append(
                    f'<figure><img src="{_rel(path, out_dir)}" alt="{esc(s.title)}">'
                    f"<figcaption>{esc(s.title)}{link}</figcaption></figure>"
                )
            elif path.suffix != ".svg":
                others.append(path)
        if others:
            links = ", ".join(f'<a href="{_rel(p, out_dir)}">{esc(p.name)}</a>' for p in others)
            parts.append(f"<details><summary>Files ({len(others)})</summary>{links}</details>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _markdown(frames: Frames, summary: str, sections: list[Section], out_dir: Path) -> str:
    lines = [f"# {_title(frames)}", "", f"Generated {_generated()} from:", ""]
    lines += [f"- `{p}` ({s})" for s, p in frames.studies.select("study", "path").iter_rows()]
    lines += ["", f"> {summary}", ""]
    lines += [line for w in frames.warnings for line in (f"> {w}", "")]
    shown, absent = _applicable(sections)
    if absent:
        lines += ["## Not applicable to this study", ""]
        lines += [f"- {s.title}: {s.skipped}" for s in absent] + [""]
    for s in shown:
        lines += [f"## {s.title}", "", f"*{s.caption}*", ""]
        if s.error:
            lines += [f"> **This output failed:** {s.error}", ""]
        lines += [f"> {n}\n" for n in s.notes]
        others = []
        for path in s.files:
            if path.suffix == ".md":
                lines += [path.read_text(encoding="utf-8"), ""]
            elif _is_figure(path):
                lines += [f"![{s.title}]({_rel(path, out_dir)})", ""]
            elif path.suffix not in (".html", ".svg"):
                others.append(path)
        svgs = [p for p in s.files if p.suffix == ".svg"]
        if others or svgs:
            lines += ["Files: " + ", ".join(f"[{p.name}]({_rel(p, out_dir)})"
                                            for p in [*svgs, *others]), ""]
    return "\n".join(lines)
