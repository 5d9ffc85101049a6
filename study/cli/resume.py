"""``gmmpvae resume STUDY_DIR [--rerun-errored]``: continue a study after its driver was lost.

Ray Tune's saved experiment state is restored: unfinished trials resume from their last
checkpoint, the same Optuna study goes on choosing the remaining trials, and the results are
consolidated (no trial_key twice). A study whose ``gmmpvae extend`` was cut (its request,
``STUDY/extend.json``, still there) is finished by the extension's driver
(`study.extend.resume_extension`): the step in flight, then the remaining steps.
``--rerun-errored`` also restarts, from scratch, the trials that errored after their last
retry (a trial whose loss became NaN is recorded as ERROR but finished, and is not re-run:
the same configuration would diverge again). In a study grown with ``gmmpvae extend`` these
are the trials of its last step (an extension under way: of the step in flight, before the
next step is planned), a continued trial again from its source's checkpoint; an errored trial
whose result a larger budget carries is left, and named (`study.store.errored_to_rerun`).
"""

from __future__ import annotations

import argparse

from study import extend, summary
from study import run as runner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study folder (or URI)")
    parser.add_argument("--rerun-errored", action="store_true",
                        help="restart the trials that errored (default: keep them as ERROR)")
    add_driver_arguments(parser)


def add_driver_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a driver that takes a study up again (``resume``, ``extend``)."""
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join instead of the study's (auto, host:port), "
                             "or 'local' for a Ray started here")
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's and Ray Tune's own output and the trials' logs")
    parser.add_argument("--quiet", action="store_true",
                        help="no live view of the running trials: a line per finished trial")


def run(args: argparse.Namespace) -> int:
    request = extend.request_of(args.study_dir)
    if request is not None:  # an extension's driver was lost: its own driver finishes it
        outcome = extend.resume_extension(args.study_dir, request, address=args.address,
                                          rerun_errored=args.rerun_errored,
                                          verbose=args.verbose, quiet=args.quiet)
    else:
        outcome = runner.resume_study(args.study_dir, rerun_errored=args.rerun_errored,
                                      address=args.address, verbose=args.verbose,
                                      quiet=args.quiet)
    spec = outcome.spec
    print("\n".join(summary.summary_lines(spec, outcome)))
    return summary.stranded_exit(spec, outcome)
