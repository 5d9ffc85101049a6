"""`study.optuna_outage`: which database errors are waited for, the warning lines of an
outage, and the one line when the grace runs out (password hidden, how to continue)."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy.exc as sa_exc

from study.errors import Unreachable
from study.optuna_outage import database_outage, database_patience
from study.spec import load_spec

URL = "postgresql+psycopg://user:s3cret@127.0.0.1:5999/optuna"


def wrapped(cause: BaseException | None) -> optuna.exceptions.StorageInternalError:
    try:
        raise optuna.exceptions.StorageInternalError("An exception is raised during the "
                                                     "commit.") from cause
    except optuna.exceptions.StorageInternalError as exc:
        return exc


def refused() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, Exception(
        'connection failed: connection to server at "127.0.0.1", port 5999 failed: '
        "Connection refused"))


def pending_rollback(during: BaseException | None) -> sa_exc.PendingRollbackError:
    """The error a cut session gives to a second query asked while the first one's error is
    being handled (``during``), as Optuna's RDB storage does when reading trials falls back to
    a slower query."""
    again = sa_exc.PendingRollbackError("Can't reconnect until invalid transaction is rolled "
                                        "back.")
    try:
        if during is None:
            raise again
        try:
            raise during
        except type(during):
            raise again  # noqa: B904 (the implicit context is what is tested)
    except sa_exc.PendingRollbackError as exc:
        return exc


@pytest.mark.parametrize("error, expected", [
    (refused(), True),
    (sa_exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")), True),
    (sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True), True),
    (sa_exc.DBAPIError("SELECT 1", {}, Exception("syntax")), False),
    (wrapped(refused()), True),
    (wrapped(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))), False),
    (wrapped(None), False),
    (wrapped(pending_rollback(refused())), True),
    (pending_rollback(refused()), True),
    (pending_rollback(None), False),
    (wrapped(pending_rollback(ValueError("a bug"))), False),
    (optuna.exceptions.UpdateFinishedTrialError("finished"), False),
    (ValueError("a bug"), False),
])
def test_transient_errors(error, expected):
    assert database_outage(error) is expected


def spec(tmp_path, grace: float):
    return load_spec("quickstart", {"study.storage": str(tmp_path / "s"),
                                    "study.optuna_storage": URL,
                                    "failure.outage_grace": grace})


def test_an_outage_that_ends_costs_two_warning_lines(tmp_path, capsys):
    calls = []

    def call():
        calls.append(1)
        if len(calls) < 4:
            raise wrapped(refused())
        return "ok"

    assert database_patience(spec(tmp_path, 60), sleep=lambda s: None).call(call) == "ok"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("gmmpvae: warning: the Optuna database postgresql+psycopg://"
                             "user:***@127.0.0.1:5999/optuna did not answer (connection failed")
    assert err[0].endswith("; retrying for up to 60 s")
    assert err[1].startswith("gmmpvae: warning: the Optuna database") and \
        "answers again (after" in err[1]
    assert "s3cret" not in "".join(err)


def test_past_the_grace_one_unreachable_line(tmp_path):
    s = spec(tmp_path, 0.2)

    def call():
        raise refused()

    with pytest.raises(Unreachable) as caught:
        database_patience(s).call(call)
    text = str(caught.value)
    assert text.startswith("the Optuna database postgresql+psycopg://user:***@127.0.0.1:5999/"
                           "optuna did not answer for 0 s (last error: connection failed: ")
    assert text.endswith(f"Connection refused); `gmmpvae resume {s.storage}` continues it")
    assert "\n" not in text and "s3cret" not in text and "[SQL" not in text
    assert isinstance(caught.value.__cause__, sa_exc.OperationalError)


def test_other_errors_are_raised_at_once(tmp_path):
    calls = []

    def call():
        calls.append(1)
        raise wrapped(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")))

    with pytest.raises(optuna.exceptions.StorageInternalError):
        database_patience(spec(tmp_path, 60)).call(call)
    assert len(calls) == 1
