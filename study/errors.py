"""The one exception the orchestrator raises for bad input.

Every layer (spec, checks, runner, the analysis front-end) raises `UsageError`; only the
command line (`study.cli`) catches it, prints its one line and exits with status 2. The command
line is the top of the building, never its foundation: no module here imports `study.cli`.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: printed as one line, exit status 2.

    A ``ValueError`` too, so that code validating values (`study.spec`) and code calling it can
    treat both alike."""
