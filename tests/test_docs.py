"""The docs stay true to the repository.

- docs/ARCHITECTURE.md: every path it names exists, and every module of `study/`, `models/`,
  `analysis/` and `search_spaces/` is named there (package plumbing, `__init__.py` and
  `__main__.py`, is named by its folder). Paths are read from the prose (`models/kl.py`, or a
  bare `claims.py` under a heading that names its folder, `## analysis/`) and from the
  indented tree of `study/`, where a name belongs to the folder it is indented under.
- README.md and docs/*.md: every relative link points to an existing file, and its `#anchor`
  to a heading of the target page; the code's `docs/PAGE.md#anchor` citations too.
- docs/SCHEMA.md names every Parquet column; docs/STUDY_FILE.md every study-file section.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "ARCHITECTURE.md"
PACKAGES = ("study", "models", "analysis", "search_spaces")
TOP_FOLDERS = (*PACKAGES, "tests", "benchmarks", "docs")
PLUMBING = {"__init__.py", "__main__.py"}

_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
_REPO_PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(TOP_FOLDERS)})/[\w./-]*)")
_BARE_MODULE = re.compile(r"(?<![\w./-])((?:\w+/)*\w+\.py)\b")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CITATION = re.compile(r"\bdocs/(\w+\.md)(?:#([\w-]+))?")


# ----------------------------------------------------------------------------------------------
# Reading paths out of ARCHITECTURE.md


def _resolve(name: str, folder: str, root: Path) -> str | None:
    """``name`` as written under ``folder``: relative to it or to any folder above it, the
    first that exists (a tree line may say ``cli/run.py`` inside ``watch/``); None if none."""
    parts = folder.split("/") if folder else []
    for depth in range(len(parts), -1, -1):
        candidate = "/".join([*parts[:depth], name]).rstrip("/")
        if (root / candidate).exists():
            return candidate
    return None


def _tree_names(block: str) -> list[tuple[str, str]]:
    """(folder, name) for every folder entry, repository path and ``*.py`` of an indented tree
    whose first line is its root folder (``study/``): a line belongs to the last folder entry
    indented less than it."""
    lines = block.splitlines()
    root = lines[0].strip().rstrip("/")
    stack: list[tuple[int, str]] = [(-1, root)]
    named: list[tuple[str, str]] = [("", root + "/")]
    for line in lines[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while len(stack) > 1 and stack[-1][0] >= indent:
            stack.pop()
        first = line.split()[0]
        if re.fullmatch(r"\w+/", first):
            named.append((stack[-1][1], first))
            stack.append((indent, f"{stack[-1][1]}/{first.rstrip('/')}"))
        paths = [p.rstrip(".,:") for p in _REPO_PATH.findall(line)]
        named.extend(("", p) for p in paths)
        named.extend((stack[-1][1], m) for m in _BARE_MODULE.findall(_REPO_PATH.sub(" ", line)))
    return named


def _prose_names(text: str) -> list[tuple[str, str]]:
    """(folder, name) for every repository path, and every bare ``*.py`` under a heading whose
    first path gives its folder (``## analysis/`` → ``analysis``)."""
    named: list[tuple[str, str]] = []
    folder = ""
    for line in text.splitlines():
        paths = [p.rstrip(".,:") for p in _REPO_PATH.findall(line)]
        if line.startswith("#"):
            folder = paths[0].split("/")[0] if paths else ""
        named.extend(("", p.split("::")[0]) for p in paths)
        stripped = _REPO_PATH.sub(" ", line)
        named.extend((folder, m) for m in _BARE_MODULE.findall(stripped))
    return named


def architecture_paths(text: str, root: Path) -> tuple[set[str], list[str]]:
    """The repository paths ``text`` names (resolved) and the names that resolve to nothing."""
    names: list[tuple[str, str]] = []
    for block in _FENCE.findall(text):
        body = block.split("\n", 1)[1].rsplit("```", 1)[0]
        if re.fullmatch(r"\w+/", body.strip().splitlines()[0].strip()):
            names += _tree_names(body)
    names += _prose_names(_FENCE.sub("", text))
    found, missing = set(), []
    for folder, name in names:
        path = _resolve(name, folder, root)
        if path is None:
            missing.append(f"{folder}/{name}" if folder else name)
        else:
            found.add(path)
    return found, missing


def modules(root: Path) -> list[str]:
    """Every module of the packages, repository-relative, less the package plumbing."""
    return sorted(str(p.relative_to(root)) for pkg in PACKAGES for p in (root / pkg).rglob("*.py")
                  if p.name not in PLUMBING)


# ----------------------------------------------------------------------------------------------
# Links and anchors


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces → hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings (a repeated one gets -1, -2, …)."""
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match.group(1))
            out.add(f"{base}-{seen[base]}" if base in seen else base)
            seen[base] = seen.get(base, 0) + 1
    return out


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file (or, for a Markdown target, anchor) is missing."""
    bad = []
    for target in _LINK.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no heading #{anchor} in {dest.name})")
    return bad


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


# ----------------------------------------------------------------------------------------------
# The parsers on small examples (each must be able to fail)


def test_tree_and_prose_paths_resolve_and_report_what_is_missing(tmp_path: Path) -> None:
    for path in ("study/tune/session.py", "study/cli/run.py", "study/run.py", "analysis/x.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    text = "\n".join([
        "## analysis/", "`x.py` and `gone.py`; see `study/run.py`.", "",
        "```", "study/", "  tune/   engine", "    session.py  Ray", "               more text,",
        "               cli/run.py (a path from another folder)", "  run.py  see docs/GONE.md",
        "  cli/", "    lost.py", "```",
    ])
    found, missing = architecture_paths(text, tmp_path)
    assert found == {"analysis", "analysis/x.py", "study", "study/run.py", "study/tune",
                     "study/cli", "study/tune/session.py", "study/cli/run.py"}
    assert missing == ["docs/GONE.md", "study/cli/lost.py", "analysis/gone.py"]


def test_broken_links_name_missing_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "A.md").write_text("# Title\n\n## What the paper's bound does\n\n## Title\n")
    (tmp_path / "B.md").write_text(
        "[ok](A.md#what-the-papers-bound-does) [ok](A.md#title-1) [web](https://x.org/y)\n"
        "[gone](C.md) [bad anchor](A.md#nope) [self](#here)\n\n## Here\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(tmp_path / "B.md") == [
        "C.md (no such file)", "A.md#nope (no heading #nope in A.md)",
    ]


# ----------------------------------------------------------------------------------------------
# The repository's own docs


@pytest.fixture(scope="module")
def named() -> tuple[set[str], list[str]]:
    return architecture_paths(ARCHITECTURE.read_text(encoding="utf-8"), ROOT)


def test_every_path_architecture_names_exists(named: tuple[set[str], list[str]]) -> None:
    _, missing = named
    assert not missing, f"docs/ARCHITECTURE.md names paths that do not exist: {missing}"


def test_every_module_is_named_in_architecture(named: tuple[set[str], list[str]]) -> None:
    found, _ = named
    unnamed = [m for m in modules(ROOT) if m not in found]
    assert not unnamed, (
        f"modules not named in docs/ARCHITECTURE.md (add each under its package): {unnamed}"
    )


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    assert not broken_links(page), f"{page.relative_to(ROOT)}: {broken_links(page)}"


def test_code_citations_of_docs_point_to_existing_headings() -> None:
    bad = []
    for source in sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")):
        for page, anchor in _CITATION.findall(source.read_text(encoding="utf-8")):
            target = DOCS / page
            if not target.exists() or (anchor and anchor not in anchors(target)):
                bad.append(f"{source.relative_to(ROOT)}: docs/{page}#{anchor}")
    assert not bad, f"citations of missing docs pages or headings: {bad}"


def test_schema_page_names_every_parquet_column() -> None:
    from models.config import MODEL_FIELDS, TRAIN_FIELDS
    from study.store.schemas import EPOCHS_SCHEMA, TEST_LL_SCHEMA, TRIALS_SCHEMA

    text = (DOCS / "SCHEMA.md").read_text(encoding="utf-8")
    # trials.parquet holds "every ModelConfig and TrainConfig field under its own name"
    config_fields = MODEL_FIELDS | TRAIN_FIELDS
    unnamed = [name for schema in (TRIALS_SCHEMA, EPOCHS_SCHEMA, TEST_LL_SCHEMA)
               for name in schema.names
               if f"`{name}`" not in text
               and not (schema is TRIALS_SCHEMA and name in config_fields)]
    assert not unnamed, f"Parquet columns docs/SCHEMA.md does not name: {unnamed}"


def test_study_file_page_has_every_section() -> None:
    from study.spec.sections import KEYS

    text = (DOCS / "STUDY_FILE.md").read_text(encoding="utf-8")
    missing = [name for name in KEYS if f"## `[{name}]`" not in text]
    assert not missing, f"study-file sections without a heading in docs/STUDY_FILE.md: {missing}"
