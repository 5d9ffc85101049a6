"""``gmmpvae extend STUDY_DIR --max-epochs N --seeds S``: grow a finished study to a larger
budget and/or more seeds from its own checkpoints (docs/BUDGETS.md).

Every trial that ran to its ``max_epochs`` without stopping early continues from its last
checkpoint to N (a new trial per configuration and budget; the smaller budget's results stay);
a trial that stopped early, was pruned or errored keeps its result at N (a carried row: the
command names how many and why); ``--seeds`` plans and runs the grid's new seeds like a normal
study. One driver per study; a crash is continued with ``gmmpvae resume STUDY_DIR``. What
cannot be done is refused in one line (exit status 2) before anything is written.
"""

from __future__ import annotations

import argparse

from study import extend, summary
from study.cli.resume import add_driver_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study folder (or URI)")
    parser.add_argument("--max-epochs", type=int, default=None, metavar="N",
                        help="the budget to bring every trial to (at least the study's)")
    parser.add_argument("--seeds", type=int, default=None, metavar="S",
                        help="the seeds a grid study should have (at least its own)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would run and exit (nothing written)")
    add_driver_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.dry_run:
        print("\n".join(extend.dry_run(args.study_dir, args.max_epochs, args.seeds)))
        return 0
    outcome = extend.extend_study(args.study_dir, max_epochs=args.max_epochs,
                                  seeds=args.seeds, address=args.address,
                                  verbose=args.verbose, quiet=args.quiet)
    spec = outcome.spec
    print("\n".join(summary.summary_lines(spec, outcome)))
    return summary.stranded_exit(spec, outcome)
