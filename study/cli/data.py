"""``gmmpvae data list`` and ``gmmpvae data fetch NAME...``: where each dataset's files are
looked for and whether they are there; downloading them from their public homes, verified.

The data folder is ``--data-dir``, else ``$GMMPVAE_DATA_DIR``, else the per-user cache
(``models.data.resolve_data_dir``). A failed fetch is one line on stderr and exit status 2,
with nothing partial left behind.
"""

from __future__ import annotations

import argparse

from models import data
from study.errors import UsageError

DATA_DIR_HELP = (
    "folder holding <dataset>/ sub-folders (default: $GMMPVAE_DATA_DIR, else "
    "$XDG_CACHE_HOME/gmmpvae/data or ~/.cache/gmmpvae/data)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    p = sub.add_parser(
        "list", help="show each dataset, where it is looked for and whether it is present"
    )
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p = sub.add_parser(
        "fetch", help="download datasets from their public homes, checking checksums"
    )
    p.add_argument(
        "names", nargs="*", metavar="NAME", help=f"{', '.join(data.DATASETS)} or all"
    )
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--no-progress", action="store_true", help="do not show download progress")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "list":
        return _list(args.data_dir)
    if args.data_command == "fetch":
        return _fetch(args.names, args.data_dir, progress=not args.no_progress)
    raise UsageError("say what to do: `gmmpvae data list` or `gmmpvae data fetch NAME`")


def _list(data_dir: str | None) -> int:
    root, origin, statuses = data.dataset_status(data_dir)
    print(f"data folder: {root} (from {origin})")
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        state = "present" if s.present else "MISSING"
        detail = s.source
        if s.missing:
            detail = f"missing {', '.join(s.missing)}; {s.source}"
        print(f"  {s.name:<{width}}  {state:<7}  {s.location}: {detail}")
    print("(present = the files are there; their contents are checked when loaded or fetched)")
    return 0


def _fetch(names: list[str], data_dir: str | None, progress: bool) -> int:
    if not names:
        raise UsageError(f"name a dataset to fetch: {', '.join(data.DATASETS)} or all")
    unknown = [n for n in names if n != "all" and n not in data.DATASETS]
    if unknown:
        raise UsageError(
            f"unknown dataset {', '.join(unknown)}: expected {', '.join(data.DATASETS)} or all"
        )
    wanted = list(data.DATASETS) if "all" in names else list(dict.fromkeys(names))
    for name in wanted:
        results = data.fetch(name, data_dir, progress=progress)
        if not results:
            print(f"{name}: bundled with scikit-learn, nothing to fetch")
        for r in results:
            if r.action == "already present":
                print(f"{name}: {r.path.name} already present in {r.path.parent} ({r.verified})")
                continue
            note = f"; the file there was invalid: {r.note}" if r.note else ""
            print(f"{name}: {r.path.name} {r.action} from {r.url} into {r.path.parent} "
                  f"({r.verified}){note}")
    return 0
