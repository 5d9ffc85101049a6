"""The Optuna database's outages (issue 17): which errors say it is away for now
(`database_outage`), and `database_patience` — the study's one patience
(`study.patience.Patience`) for its Optuna calls: each waits out the database for the study's
``[failure] outage_grace``, then raises `study.errors.Unreachable` naming the database (its
password shown as ``***``) and how to continue. Ray-free.

**Transient** (public exception classes only): SQLAlchemy's ``OperationalError`` and
``InterfaceError`` (a refused or cut connection; PostgreSQL shutting down or starting up),
``DisconnectionError``, any ``DBAPIError`` whose documented ``connection_invalidated`` is set;
SQLAlchemy's ``PendingRollbackError`` raised while a transient error was being handled (its
``__context__``: a session whose connection was cut is asked a second query before it is rolled
back — Optuna's RDB storage does so, reading trials, when it falls back to a slower query after an
``OperationalError``); and Optuna's ``StorageInternalError`` when the error it was raised
``from`` (``__cause__``: the RDB storage wraps every SQLAlchemy error of a session that way) is
transient. Anything else (an ``IntegrityError``, a value Optuna refuses, a bug) is raised at
once.

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

import optuna
import sqlalchemy.exc as sa_exc

from study.console import warn
from study.patience import Patience
from study.spec import StudySpec
from study.spec.checks import hide_password

TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)


def database_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is away for now (see the module docstring)."""
    if isinstance(exc, optuna.exceptions.StorageInternalError):
        cause = exc.__cause__
        return cause is not None and database_outage(cause)
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, sa_exc.PendingRollbackError):
        during = exc.__cause__ or exc.__context__
        return during is not None and database_outage(during)
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def database(spec: StudySpec) -> str:
    """The study's Optuna database as it may be printed (password hidden)."""
    return f"the Optuna database {hide_password(spec.optuna_storage_url)}"


def resume_hint(spec: StudySpec) -> str:
    return f"`gmmpvae resume {spec.storage}` continues it"


def database_patience(spec: StudySpec, sleep: Callable[[float], None] = time.sleep
                      ) -> Patience:
    """The patience of the study's Optuna calls: ``call(fn)`` retries ``fn`` while the
    database is away, for at most the study's outage grace; one warning line when it first
    fails and one when it answers again; then `Unreachable`: "the Optuna database URL did not
    answer for N s (last error: …); `gmmpvae resume STUDY` continues it". The outage is the
    call's (the driver's calls follow one another). A journal file never waits (its errors
    are not database outages)."""
    hint = resume_hint(spec)
    return Patience(database(spec), spec.failure.outage_grace, database_outage, warn,
                    away="did not answer", cut=200, hint=hint, sleep=sleep)
