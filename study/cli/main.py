"""The ``gmmpvae`` command line.

Each sub-command lives in its own module with two functions, ``add_arguments(parser)`` and
``run(args) -> int``, and is imported only when it is used (so ``gmmpvae --help`` stays fast and
nothing heavy such as Ray is imported by commands that do not need it). Bad input is reported as
one line on stderr with exit status 2: a sub-command raises ``study.errors.UsageError`` (or a
``ValueError`` from config validation) and this module prints it; a server that stays
unreachable (``study.errors.Unreachable``) is one line too, with exit status 3. No module outside
`study.cli` imports the command line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from models import __version__
from study.errors import Unreachable, UsageError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("study.cli.train", "train and evaluate one configuration (no Ray)"),
    "data": ("study.cli.data", "list or fetch datasets"),
    "run": ("study.cli.run", "run a study (TOML file or preset name) with Ray Tune"),
    "resume": ("study.cli.resume", "resume a study after a crash of the driver"),
    "status": ("study.cli.status", "show a study's trials by state and the best so far"),
    "report": ("study.cli.report", "write tables, figures and index.html for study folders"),
    "export": ("study.cli.export", "write a finished study's trials to TensorBoard or MLflow"),
    "dashboard": ("study.cli.dashboard", "serve a study's Optuna trials with optuna-dashboard"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the usage and then the error; we print one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(2)


def build_parser(load: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gmmpvae",
        description="Hyperparameter studies of the GMMpVAE model with Ray Tune and Optuna.",
    )
    parser.add_argument("--version", action="version", version=f"gmmpvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if load is None or name in load:
            module = importlib.import_module(module_name)  # a missing dependency: raised
            module.add_arguments(p)
            p.set_defaults(command_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the sub-command that runs (the first positional word).
    wanted = [a for a in argv if a in COMMANDS][:1]
    parser = build_parser(load=wanted)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.command_module.run(args) or 0)
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"gmmpvae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:
        print(f"gmmpvae {args.command}: error: {exc}", file=sys.stderr)
        return Unreachable.exit_status
    except KeyboardInterrupt:
        print(f"gmmpvae {args.command}: interrupted", file=sys.stderr)
        return 130

