"""The ``gmmpvae`` command line: `main` registers the sub-commands (`study.cli.main`); each
sub-command is one module here with ``add_arguments(parser)`` and ``run(args) -> int``.

The entry point of ``pyproject.toml`` is ``study.cli:main``; ``python -m study.cli`` runs it
too (`__main__`).
"""

from study.cli.main import main

__all__ = ["main"]
