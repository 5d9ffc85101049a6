"""``gmmpvae report STUDY_DIR [--out DIR] [--compare OTHER_STUDY_DIR ...]``.

Writes the tables, figures, ``index.html`` and ``report.md`` of one study (default folder
``STUDY_DIR/report``), or of several merged with ``--compare`` (each labelled by its study
name, or its folder name when names clash). A missing, empty or unreadable study folder is one
line on stderr and exit status 2; partial results are reported (the report says which trials are
missing or failed); an output that fails is named on stderr and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis import registry, report
from analysis.load import ResultsError, load
from study.errors import UsageError
from study.store import RECORD_FILE, TRIALS_DIR, consolidate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR",
                        help="study folder (with results/trials.parquet)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="report folder (default: STUDY_DIR/report)")
    parser.add_argument("--compare", type=Path, nargs="+", action="extend", default=[],
                        metavar="OTHER_STUDY_DIR",
                        help="more study folders to merge into the report, each labelled")
    parser.add_argument("--only", nargs="+", action="extend", default=None, metavar="OUTPUT",
                        help="write only these outputs (e.g. table1 figure3)")


def _consolidate(study_dir: Path) -> None:
    """Bring STUDY/results up to date with the trial folders first (idempotent, atomic), so a
    running or crashed study is reported as it stands, not as of its last consolidation."""
    trials = study_dir / TRIALS_DIR
    if trials.is_dir() and any(trials.glob(f"*/{RECORD_FILE}")):
        for line in consolidate(str(study_dir)).damaged.values():
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
    out = args.out if args.out is not None else args.study_dir / "report"
    result = report.build(frames, out, names=args.only)
    print(result.summary)
    for warning in frames.warnings:
        print(f"gmmpvae report: warning: {warning}", file=sys.stderr)
    for section in result.skipped:
        print(f"{section.name}: {section.skipped}")
    for section in result.failed:
        print(f"gmmpvae report: {section.name} failed: {section.error}", file=sys.stderr)
    print(f"report: {result.index}")
    return 1 if result.failed else 0
