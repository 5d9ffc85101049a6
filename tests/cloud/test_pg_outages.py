"""PostgreSQL restarted under a running study (issue 17), for real: the session's PostgreSQL
fixture stopped (fast shutdown: ``pg_ctl stop -m fast``'s SIGINT) while a ``gmmpvae run``
subprocess drives fake trials of a local study folder whose Optuna study lives there, then
started again (always, in a ``finally``: the fixture is shared).

- down for less than ``--outage-grace``: the driver waits (two warning lines) and finishes;
- down for longer: the driver ends with one line (exit status 3) naming the database, its
  password hidden, and how to continue; ``gmmpvae resume`` finishes the study once it is back.

Either way every planned key ends once COMPLETE in Optuna and once in the records. Marked
``integration`` (the second step of ``.ci/run``)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import subprocess_env
from test_cloud_study import cli, finish, optuna_complete
from test_runner import write_study

pytestmark = pytest.mark.integration

FAKE = "fake_trials:fake_trial"


def records(study: Path) -> list[Path]:
    return list((study / "trials").glob("*/trial.json"))


def wait_for_records(driver, study: Path, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None and len(records(study)) < n:
        time.sleep(0.2)
    assert driver.poll() is None and len(records(study)) >= n, "the study ended too soon"


def restarted(pg_server) -> None:
    """The shared PostgreSQL up again, whatever happened."""
    if pg_server.server is None or pg_server.server.proc.poll() is not None:
        pg_server.start()


def outage_study(tmp_path: Path, pg_url: str, name: str) -> tuple[Path, Path, list[str]]:
    from study.spec import load_spec

    path = write_study(tmp_path, name, fake={"FAKE_EPOCH_SECONDS": 0.8},
                       study={"optuna_storage": pg_url},
                       budget={"max_epochs": 4, "patience": 4})
    planned = sorted(t["trial_key"] for t in load_spec(str(path)).plan())
    return path, tmp_path / name, planned


def check_each_key_once(study: Path, pg_url: str, name: str, planned: list[str]) -> None:
    trials = pq.read_table(study / "results" / "trials.parquet").to_pylist()
    assert sorted(r["trial_key"] for r in trials) == planned
    assert {r["state"] for r in trials} == {"COMPLETED"}
    complete, all_trials = optuna_complete(pg_url, name)
    assert complete == planned  # once each
    assert len(all_trials) == len(planned)  # no extra trial (a lost ask adopted, not doubled)


def test_a_session_cut_between_two_queries_is_an_outage(pg_server, pg_url):
    """A connection cut by the server (as a restart does) under a session that is asked a second
    query while the first one's error is handled: SQLAlchemy's ``PendingRollbackError``, which
    Optuna's RDB storage wraps in ``StorageInternalError`` when reading trials falls back to a
    slower query — the case that ended a run with exit status 1 before `database_outage`
    counted it (CI, stop 27). Fails loudly if SQLAlchemy or psycopg name it otherwise."""
    import optuna
    import psycopg
    import sqlalchemy as sa
    from servers import PG_PASSWORD, PG_USER
    from sqlalchemy.orm import Session

    from study.optuna_outage import database_outage

    engine = sa.create_engine(pg_url)
    try:
        with Session(engine) as session:
            pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            with psycopg.connect(host="127.0.0.1", port=pg_server.port, user=PG_USER,
                                 password=PG_PASSWORD, dbname="postgres",
                                 autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(sa.exc.OperationalError) as first:
                try:
                    session.execute(sa.text("SELECT 1"))
                except sa.exc.OperationalError:
                    with pytest.raises(sa.exc.PendingRollbackError) as second:
                        session.execute(sa.text("SELECT 1"))
                    raise
            try:
                raise optuna.exceptions.StorageInternalError("commit") from second.value
            except optuna.exceptions.StorageInternalError as wrapped:
                assert database_outage(wrapped)
            assert database_outage(first.value) and database_outage(second.value)
    finally:
        engine.dispose()


def test_a_postgres_restart_mid_study_is_waited_out(pg_server, pg_url, tmp_path):
    path, study, planned = outage_study(tmp_path, pg_url, "pgwait")
    env = subprocess_env({}, GMMPVAE_TRIAL_FUNCTION=FAKE)
    start = time.monotonic()
    driver = cli(["run", str(path), "--outage-grace", "60"], env)
    try:
        wait_for_records(driver, study, 2)
        pg_server.stop()
        down = time.monotonic()
        time.sleep(18)
    finally:
        restarted(pg_server)
    print(f"PostgreSQL down for {time.monotonic() - down:.1f} s")
    out = finish(driver, timeout=120)
    print(f"run with a PostgreSQL restart: {time.monotonic() - start:.1f} s")
    assert driver.returncode == 0, out
    assert "Traceback" not in out, out
    waited = re.findall(r"gmmpvae: warning: the Optuna database postgresql\+psycopg://gmmpvae:"
                        r"\*\*\*@127\.0\.0\.1:\d+/\w+ did not answer \(.+\); retrying for up "
                        r"to 60 s", out)
    back = re.findall(r"gmmpvae: warning: the Optuna database \S+ answers again \(after "
                      r"(\d+) s\)", out)
    assert waited and back, out
    print(f"recovered after {back} s\n{out}")
    assert "gmmpvae-pw" not in out
    check_each_key_once(study, pg_url, "pgwait", planned)


def test_a_postgres_outage_past_the_grace_ends_in_one_line_and_resumes(pg_server, pg_url,
                                                                        tmp_path):
    path, study, planned = outage_study(tmp_path, pg_url, "pggone")
    env = subprocess_env({}, GMMPVAE_TRIAL_FUNCTION=FAKE)
    start = time.monotonic()
    driver = cli(["run", str(path), "--outage-grace", "10"], env)
    try:
        wait_for_records(driver, study, 2)
        pg_server.stop()
        down = time.monotonic()
        out = finish(driver, timeout=90)
        ended = time.monotonic() - down
    finally:
        restarted(pg_server)
    print(f"driver ended {ended:.1f} s after PostgreSQL stopped\n{out}")
    assert driver.returncode == 3, out
    assert "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"gmmpvae run: error: the Optuna database postgresql\+psycopg://"
                        r"gmmpvae:\*\*\*@127\.0\.0\.1:\d+/\w+ did not answer for 1\d s "
                        r"\(last error: .+\); `gmmpvae resume " + re.escape(str(study))
                        + r"` continues it", last), last
    assert "gmmpvae-pw" not in out
    assert len(records(study)) < len(planned)
    resume = cli(["resume", str(study)], env)
    out = finish(resume, timeout=120)
    print(f"run + outage + resume: {time.monotonic() - start:.1f} s")
    assert resume.returncode == 0, out
    check_each_key_once(study, pg_url, "pggone", planned)
