"""The object store unreachable for a while mid-study (issue 17, "failures of the servers
themselves"): the SeaweedFS gateway frozen (SIGSTOP of its process group: our own fixture's
process; SIGCONT always follows) while a `gmmpvae run` subprocess drives a study on it, the
Optuna study in PostgreSQL.

- shorter than ``outage_grace``: the study finishes; every planned key once in trials/epochs/
  test_ll and once COMPLETE in Optuna; the driver warned once that it waits;
- longer than a small ``outage_grace``: the driver stops with one line (exit status 3) naming
  the store and how to continue; after the store is back `gmmpvae resume` finishes the study,
  every key once.

Marked ``integration`` (real servers; the second step of ``.ci/run``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import subprocess_env
from drivers import kill_group
from test_cloud_study import check_each_key_once, optuna_complete, records
from test_runner import write_study

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAKE = {"FAKE_EPOCH_SECONDS": 0.4}
UNREACHABLE = re.compile(
    r"gmmpvae run: error: the object store of (?P<uri>s3://\S+) did not answer for \d+ s "
    r"\(last error: [^\n]*NETWORK_CONNECTION[^\n]*\); the study is left as it was: "
    r"`gmmpvae resume (?P=uri)` continues it once the store answers")


@contextlib.contextmanager
def frozen(s3_server) -> Iterator[None]:
    """The S3 server's process group stopped for the block, and continued whatever happens."""
    group = s3_server.server.proc.pid
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=REPO, env=env,
                            stdout=out, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_records(driver: subprocess.Popen, uri: str, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None and len(records(uri)) < n:
        time.sleep(0.3)
    assert driver.poll() is None and len(records(uri)) >= n, "the study ended too soon"


def finish(driver: subprocess.Popen, timeout: float) -> int:
    try:
        return driver.wait(timeout)
    finally:
        kill_group(driver)


def study_of(tmp_path: Path, s3_env: dict[str, str], name: str, uri: str, pg_url: str,
             **failure: float) -> tuple[Path, list[str], dict[str, str]]:
    scratch = Path(s3_env["GMMPVAE_SCRATCH"])
    scratch.mkdir(parents=True)
    (scratch / "fake.json").write_text(json.dumps(FAKE))
    path = write_study(tmp_path, name, study={"storage": uri, "optuna_storage": pg_url},
                       budget={"max_epochs": 5, "patience": 5}, failure=failure)
    from study.spec import load_spec

    planned = sorted(t["trial_key"] for t in load_spec(str(path)).plan())
    env = subprocess_env(s3_env, GMMPVAE_TRIAL_FUNCTION="fake_trials:fake_trial")
    return path, planned, env


def lines_of(log: Path, *words: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if any(w in line for w in words)]


def test_an_outage_shorter_than_the_grace_loses_nothing(s3_server, s3_env, s3_study, pg_url,
                                                        tmp_path):
    path, planned, env = study_of(tmp_path, s3_env, "brief", s3_study, pg_url)
    log = tmp_path / "run.log"
    driver = start(["run", str(path)], env, log)
    wait_records(driver, s3_study, 2)
    with frozen(s3_server):
        time.sleep(22)
    back = time.monotonic()
    code = finish(driver, timeout=240)
    print(f"after the store came back: the driver ended in {time.monotonic() - back:.1f} s")
    text = log.read_text()
    print("\n".join(lines_of(log, "warning", "error", "retrying", "unfinished")))
    assert code == 0, text
    check_each_key_once(s3_study, planned, max_epochs=5, n_test=5)
    complete, trials = optuna_complete(pg_url, "brief")
    assert complete == planned, text
    assert len(trials) == len(planned)
    assert f"{len(planned)} trial(s) recorded ({len(planned)} COMPLETED)" in text, text


def test_an_outage_longer_than_the_grace_stops_the_driver_resumably(s3_server, s3_env,
                                                                    s3_study, pg_url,
                                                                    tmp_path):
    path, planned, env = study_of(tmp_path, s3_env, "long", s3_study, pg_url,
                                  outage_grace=12.0)
    log = tmp_path / "run.log"
    driver = start(["run", str(path)], env, log)
    wait_records(driver, s3_study, 2)
    with frozen(s3_server):
        frozen_at = time.monotonic()
        try:
            code = driver.wait(timeout=80)
        except subprocess.TimeoutExpired:
            code = None
        stopped_in = time.monotonic() - frozen_at
    if code is None:
        code = finish(driver, timeout=60)
    kill_group(driver)
    text = log.read_text()
    print(f"the driver stopped {stopped_in:.1f} s into the outage (exit {code})")
    print("\n".join(lines_of(log, "warning", "error", "retrying", "unfinished")))
    assert code == 3, text
    last = text.strip().splitlines()[-1]
    assert UNREACHABLE.fullmatch(last), last
    assert UNREACHABLE.fullmatch(last)["uri"] == s3_study
    assert len(lines_of(log, "gmmpvae run: error:")) == 1, text

    start_resume = time.monotonic()
    rlog = tmp_path / "resume.log"
    resume = start(["resume", s3_study], env, rlog)
    rcode = finish(resume, timeout=240)
    print(f"resume: {time.monotonic() - start_resume:.1f} s")
    print("\n".join(lines_of(rlog, "warning", "error", "retrying", "unfinished", "resum")))
    assert rcode == 0, rlog.read_text()
    check_each_key_once(s3_study, planned, max_epochs=5, n_test=5)
    complete, trials = optuna_complete(pg_url, "long")
    assert complete == planned, rlog.read_text()
    assert not [t for t in trials if t.state.name == "RUNNING"]
