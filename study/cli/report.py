"""``gmmpvae report STUDY_DIR [--out DIR] [--compare OTHER_STUDY_DIR ...]``.

Writes the tables, figures, ``index.html`` and ``report.md`` of one study (default folder
``STUDY_DIR/report``), or of several merged with ``--compare`` (each labelled by its study
name, or its folder name when names clash). A missing, empty or unreadable study folder is one
line on stderr and exit status 2; partial results are reported (the report says which trials are
missing or failed); an output that fails is named on stderr and the exit status is 1.

A study on an object store (``s3://bucket/studies/x``) is read from there (its Parquet through
pyarrow, endpoint and keys from the environment); its report is built in a local temporary
folder and uploaded to ``STUDY/report/`` on the store, unless ``--out`` names a local folder
(or another URI) to write it to.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from analysis import registry, report
from analysis.load import ResultsError, load
from study import store
from study.errors import UsageError
from study.store import RECORD_FILE, consolidate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR",
                        help="study folder or URI (with results/trials.parquet)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="report folder or URI (default: STUDY_DIR/report)")
    parser.add_argument("--compare", nargs="+", action="extend", default=[],
                        metavar="OTHER_STUDY_DIR",
                        help="more study folders to merge into the report, each labelled")
    parser.add_argument("--only", nargs="+", action="extend", default=None, metavar="OUTPUT",
                        help="write only these outputs (e.g. table1 figure3)")


def _consolidate(study_dir: str) -> None:
    """Bring STUDY/results up to date with the trial folders first (idempotent, atomic), so a
    running or crashed study is reported as it stands, not as of its last consolidation."""
    fs, root = store.filesystem(study_dir)
    selector = pafs.FileSelector(store.join(root, store.TRIALS_DIR), allow_not_found=True,
                                 recursive=True)
    try:
        found = any(i.path.endswith(f"/{RECORD_FILE}") for i in fs.get_file_info(selector))
    except OSError as exc:  # an object store that cannot be read: one line
        raise UsageError(f"{study_dir} cannot be read: {store.one_line(exc)}") from None
    if found:
        for line in consolidate(study_dir).damaged.values():
            print(f"gmmpvae report: warning: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    dirs = [args.study_dir, *args.compare]
    try:
        if args.only is not None:
            registry.outputs(args.only)  # unknown names are a usage error, before any work
        for study_dir in dirs:
            _consolidate(study_dir)
        frames = load(dirs)
    except ResultsError as exc:
        raise UsageError(str(exc)) from exc
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from exc
    out = args.out if args.out is not None else store.join(args.study_dir, "report")
    if store.is_uri(out):
        with tempfile.TemporaryDirectory(prefix="gmmpvae-report-") as tmp:
            result = report.build(frames, Path(tmp), names=args.only)
            _upload(tmp, out)
        index: str = store.join(out, result.index.name)
    else:
        result = report.build(frames, Path(out), names=args.only)
        index = str(result.index)
    print(result.summary)
    for warning in frames.warnings:
        print(f"gmmpvae report: warning: {warning}", file=sys.stderr)
    for section in result.skipped:
        print(f"{section.name}: {section.skipped}")
    for section in result.failed:
        print(f"gmmpvae report: {section.name} failed: {section.error}", file=sys.stderr)
    print(f"report: {index}")
    return 1 if result.failed else 0


def _upload(local: str, out: str) -> None:
    """Copy the built report to ``out`` on its store (one line and exit status 2 if not)."""
    try:
        fs, path = store.filesystem(out)
        store.copy_folder(local, fs, path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"the report could not be written to {out}: "
                         f"{store.one_line(exc)}") from None
