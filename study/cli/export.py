"""``gmmpvae export STUDY_DIR --to tensorboard|mlflow``: a finished study into a tracker.

Replays the study's Parquet files (`study.watch.export`): one TensorBoard run folder or one MLflow
run per trial, with the tags, steps and hyperparameters a live study's trackers write.
Defaults: ``STUDY/tensorboard/`` (``--out`` elsewhere), ``sqlite:///STUDY/mlflow.db``
(``--mlflow-uri`` elsewhere), the experiment named after the study. Trials already there are
skipped. Needs the ``tracking`` extra.
"""

from __future__ import annotations

import argparse

from study import store
from study.errors import UsageError
from study.spec import load_study
from study.watch import export, tracking
from study.watch.export import TARGETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study folder")
    parser.add_argument("--to", required=True, choices=TARGETS, help="the tracker")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="TensorBoard: the folder of the runs (default STUDY/tensorboard)")
    parser.add_argument("--mlflow-uri", default=None, metavar="URI",
                        help="MLflow: the tracking URI (default sqlite:///STUDY/mlflow.db)")


def run(args: argparse.Namespace) -> int:
    if store.is_uri(args.study_dir):
        raise UsageError(f"{args.study_dir}: export reads a local study folder")
    spec, _ = load_study(args.study_dir)
    mlflow_uri = args.mlflow_uri or spec.tracking.mlflow or None
    written, skipped = export.export(args.study_dir, spec.name, args.to, out=args.out,
                                     mlflow_uri=mlflow_uri)
    where = (args.out or tracking.tensorboard_dir(spec.storage) if args.to == "tensorboard"
             else tracking.mlflow_uri(mlflow_uri, spec.storage))
    print(f"export {spec.name}: {written} trial(s) written to {args.to} at {where}"
          + (f", {skipped} already there" if skipped else ""))
    return 0
