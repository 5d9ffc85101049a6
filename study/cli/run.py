"""``gmmpvae run STUDY_FILE_OR_PRESET [flags]``: run a study with Ray Tune and Optuna.

Every field of the study file can be overridden from the command line (`study.spec.study_file`'s
``OVERRIDE_FLAGS``). Everything is checked before anything starts — the spec, the storage,
and the resources (against this machine for the embedded Ray, against the cluster's nodes with
``--address``) — a problem is one line and exit status 2, and nothing is written.
``--dry-run`` prints the trials (a grid's full list) and the resources, and starts nothing.
"""

from __future__ import annotations

import argparse

from study import run as runner
from study import summary
from study.spec import FIELD_HELP, OVERRIDE_FLAGS, StudySpec, load_spec, validate
from study.spec.checks import local_capacity
from study.watch.tracking import WANDB_MODES


def _dest(field_name: str) -> str:
    return "override_" + field_name.replace(".", "__")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="STUDY_FILE_OR_PRESET",
                        help="a study file (.toml) or the name of a preset (e.g. quickstart)")
    overrides = parser.add_argument_group("overrides of the study file")
    for flag, field_name, kind in OVERRIDE_FLAGS:
        overrides.add_argument(flag, dest=_dest(field_name), type=kind, default=None,
                               metavar=field_name.split(".")[-1].upper(),
                               help=FIELD_HELP.get(field_name))
    parser.add_argument("--dry-run", action="store_true",
                        help="print the trials and the resources, then exit (Ray not started)")
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's and Ray Tune's own output and the trials' logs")
    parser.add_argument("--quiet", action="store_true",
                        help="no live view of the running trials: a line per finished trial")
    trackers = parser.add_argument_group(
        "experiment trackers (pip install 'gmmpvae-study[tracking]')")
    trackers.add_argument("--tensorboard", action="store_true", default=None,
                          help="TensorBoard event files under STUDY/tensorboard/")
    trackers.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                          help="one MLflow run per trial (no URI: sqlite:///STUDY/mlflow.db)")
    trackers.add_argument("--wandb-project", default=None, metavar="PROJECT",
                          help="one Weights & Biases run per trial in this project")
    trackers.add_argument("--wandb-mode", default=None, choices=WANDB_MODES,
                          help="W&B mode (default offline: run folders under STUDY/wandb/)")


def overrides_of(args: argparse.Namespace) -> dict[str, object]:
    """The flags as ``section.field`` overrides of the study file (None: not given); the
    tracker flags override its ``[tracking]`` section (`study.watch.tracking`)."""
    return {**{f: getattr(args, _dest(f)) for _, f, _ in OVERRIDE_FLAGS},
            "tracking.tensorboard": args.tensorboard,
            "tracking.mlflow": True if args.mlflow == "" else args.mlflow,
            "tracking.wandb.project": args.wandb_project,
            "tracking.wandb.mode": args.wandb_mode}


def resources_text(spec: StudySpec, slots: int | None) -> str:
    """The resource line of a dry run."""
    r = spec.resources
    per_trial = f"{r.cpus_per_trial:g} CPU + {r.gpus_per_trial:g} GPU per trial"
    if slots is None:
        return (f"resources  {per_trial}; checked against the nodes of the cluster at "
                f"{spec.study.address} when the run starts")
    cpus, gpus = local_capacity(r.gpus_per_trial > 0)
    at_once = min(slots, r.max_concurrent) if r.max_concurrent else slots
    return (f"resources  {per_trial}; this machine: {cpus} CPU(s), {gpus} GPU(s) counted"
            f"{'' if r.gpus_per_trial > 0 else ' (not asked for)'} → {slots} slot(s), "
            f"{at_once} trial(s) at once")


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.study, overrides_of(args))
    validated = validate(spec, new=True)  # once: its result is handed on to the run
    if args.dry_run:
        print(summary.describe(spec))
        print(resources_text(spec, validated.slots))
        return 0
    outcome = runner.run_study(spec, verbose=args.verbose, validated=validated,
                               quiet=args.quiet)
    print("\n".join(summary.summary_lines(spec, outcome)))
    return summary.stranded_exit(spec, outcome)
