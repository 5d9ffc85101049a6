"""The orchestrator's two exceptions for the user: bad input, and a server that stays away.

Every layer (spec, checks, runner, the analysis front-end) raises `UsageError` for bad input;
`Unreachable` when the study's object store or Optuna database stays unreachable past the
study's grace period (``[failure] outage_grace``). Only the command line (`study.cli`) catches
them: it prints the one line and exits with status 2 (`UsageError`) or 3 (`Unreachable`: the
study is intact and ``gmmpvae resume`` continues it). The command line is the top of the
building, never its foundation: no module here imports `study.cli`.
"""

from __future__ import annotations

RESUMABLE_EXIT = 3  # the study stopped but is intact: `gmmpvae resume` continues it


class UsageError(ValueError):
    """Bad input from the user: printed as one line, exit status 2.

    A ``ValueError`` too, so that code validating values (`study.spec`) and code calling it can
    treat both alike."""


class Unreachable(RuntimeError):
    """A server the study needs (its object store, its Optuna database) did not answer within
    the grace period: printed as one line, exit status 3; the study is left resumable."""

    exit_status = RESUMABLE_EXIT

    def __init__(self, line: str, *, hint: str | None = None) -> None:
        """``line``: what did not answer, for how long, its last error; ``hint``: how to
        continue (the one who knows it adds it: `with_hint`), after a ``;``."""
        super().__init__(f"{line}; {hint}" if hint else line)
        self.line, self.hint = line, hint

    def with_hint(self, hint: str) -> Unreachable:
        """The same line with ``hint``, unless it says how to continue already."""
        return self if self.hint else Unreachable(self.line, hint=hint)

    def __reduce__(self) -> tuple[object, ...]:  # pickled with its hint (Ray ships errors)
        return _unreachable, (self.line, self.hint)


def _unreachable(line: str, hint: str | None) -> Unreachable:
    return Unreachable(line, hint=hint)
