"""The Optuna database's outages (issue 17): which errors are worth waiting for (`transient`),
and `patient` — one of the driver's Optuna calls retried with `study.retry.patiently` for the
study's ``[failure] outage_grace``, then `study.errors.Unreachable` naming the database (its
password shown as ``***``) and how to continue. Ray-free.

**Transient** (public exception classes only): SQLAlchemy's ``OperationalError`` and
``InterfaceError`` (a refused or cut connection; PostgreSQL shutting down or starting up),
``DisconnectionError``, any ``DBAPIError`` whose documented ``connection_invalidated`` is set;
and Optuna's ``StorageInternalError`` when the error it was raised ``from`` (``__cause__``: the
RDB storage wraps every SQLAlchemy error of a session that way) is transient. Anything else (an
``IntegrityError``, a value Optuna refuses, a bug) is raised at once.

**Retrying a call cut in flight** (its commit may or may not have reached the server):
``tell(…, skip_if_finished=True)`` is idempotent (a retry finds the trial finished and leaves
it); ``trial.report`` and ``suggest_*`` on a trial write the same row again; reading is
harmless. ``ask`` is not: a retry asks another trial, and the first one, RUNNING, is nobody's —
the searcher therefore looks for such trials after every failed call and adopts them
(`study.tune.searcher`). A commit that is lost before it reaches the server changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import optuna
import sqlalchemy.exc as sa_exc

from study.console import warn
from study.errors import Unreachable
from study.retry import patiently
from study.spec import StudySpec
from study.spec.checks import hide_password

T = TypeVar("T")

TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is away for now (see the module docstring)."""
    if isinstance(exc, optuna.exceptions.StorageInternalError):
        cause = exc.__cause__
        return cause is not None and transient(cause)
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def database(spec: StudySpec) -> str:
    """The study's Optuna database as it may be printed (password hidden)."""
    return f"the Optuna database {hide_password(spec.optuna_storage_url)}"


def resume_hint(spec: StudySpec) -> str:
    return f"`gmmpvae resume {spec.storage}` continues it"


def patient(spec: StudySpec, call: Callable[[], T], *,
            on_wait: Callable[[BaseException], None] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, retried while the database is away, for at most the study's outage grace;
    one warning line when it first fails and one when it answers again. ``on_wait(error)``:
    told before each wait (the searcher marks its view of the study stale). Then
    `Unreachable`: "the Optuna database URL did not answer for N s (last error: …);
    `gmmpvae resume STUDY` continues it". A journal file never waits (its errors are not
    transient)."""
    first: list[float] = []

    def waiting(away: BaseException, seconds: float) -> None:
        exc = away.__cause__ or away
        if not first:
            first.append(time.monotonic())
            warn(f"{database(spec)} did not answer ({one_line(exc)}); retrying for up to "
                 f"{spec.failure.outage_grace:g} s")
        if on_wait is not None:
            on_wait(exc)

    def attempt() -> T:
        try:
            return call()
        except Exception as exc:
            if transient(exc):  # carried as the database's own words (Unreachable's line)
                raise _Away(one_line(exc)) from exc
            raise

    try:
        out = patiently(attempt, what=database(spec), grace=spec.failure.outage_grace,
                        transient=lambda exc: isinstance(exc, _Away), on_wait=waiting,
                        sleep=sleep)
    except Unreachable as exc:
        away = exc.__cause__
        raise Unreachable(f"{exc}; {resume_hint(spec)}") from (
            away.__cause__ if away is not None else None)
    if first:
        warn(f"{database(spec)} answers again (after {time.monotonic() - first[0]:.0f} s)")
    return out


class _Away(Exception):
    """A transient database error, in its one line (its ``__cause__``: the error itself)."""


def one_line(exc: BaseException) -> str:
    """The database's own words for an error: the driver's message (a DBAPI error's
    ``orig``), without SQLAlchemy's SQL text and link, or Optuna's wrapper."""
    root: BaseException = exc
    if isinstance(root, optuna.exceptions.StorageInternalError) and root.__cause__ is not None:
        root = root.__cause__
    if isinstance(root, sa_exc.DBAPIError) and root.orig is not None:
        root = root.orig
    text = " ".join(str(root).split()) or type(root).__name__
    return text[:200]
