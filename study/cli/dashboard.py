"""``gmmpvae dashboard STUDY_DIR [--port N] [--host H]``: optuna-dashboard on a study.

optuna-dashboard's own command line cannot open a journal file, the default Optuna storage
of a study; this opens the study's storage (its ``optuna.journal``, or the RDB URL of
``study.optuna_storage``) and serves it with ``optuna_dashboard.run_server``, on 127.0.0.1
unless ``--host`` says otherwise, printing the URL first. Ctrl-C stops it. No Ray. Needs the
``dashboard`` extra (``pip install 'gmmpvae-study[dashboard]'``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from study.errors import UsageError
from study.spec import load_study
from study.watch import tracking

DEFAULT_PORT = 8080


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study folder")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"the port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default 127.0.0.1: this machine only)")


def open_storage(url: str, journal: bool) -> Any:
    """The study's Optuna storage, read as it is (a missing journal is an error, not a new
    empty one)."""
    import optuna  # here: the command's help and its refusals need no Optuna

    if journal:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        if not os.path.isfile(url):
            raise UsageError(f"{url}: no Optuna journal there (has the study started?)")
        return JournalStorage(JournalFileBackend(url))
    return optuna.storages.RDBStorage(url)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: expected a port number from 1 to 65535")
    tracking.check_available(["dashboard"])
    spec, _ = load_study(args.study_dir)
    storage = open_storage(spec.optuna_storage_url, spec.optuna_storage_is_journal)
    import optuna_dashboard  # an optional extra, checked above

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"dashboard of study {spec.name} ({spec.optuna_storage_url}): "
          f"http://{host}:{args.port}/dashboard/  (Ctrl-C stops it)", flush=True)
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: "
                         f"{exc.strerror or exc}") from None
    print("dashboard stopped", file=sys.stderr)
    return 0
