"""Session fixtures of the cloud-path tests: one SeaweedFS S3 gateway and one PostgreSQL
cluster for the whole session (started on first use, on 127.0.0.1, stopped by their PIDs at the
end); each test gets its own study prefix in the bucket, its own database, and the endpoint and
keys in its environment the way a user sets them (`servers.S3Server.env`)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
STUDY_TESTS = HERE.parent / "study"
# servers; fake_trials and write_study. This folder first: its tests import this conftest's
# helpers as ``conftest``, and tests/study has a conftest.py of its own.
for folder in (STUDY_TESTS, HERE):
    if str(folder) in sys.path:
        sys.path.remove(str(folder))
    sys.path.insert(0, str(folder))
# Ray's workers import fake_trials too, also on the nodes a test starts in this process
# (`ray.cluster_utils.Cluster`), which inherit this environment: tests/study's conftest says the
# same, but it is not loaded when tests/cloud runs alone.
if str(STUDY_TESTS) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(STUDY_TESTS), os.environ.get("PYTHONPATH", "")) if p)

from servers import BUCKET, PgServer, S3Server, Unavailable  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[PgServer]:
    server = PgServer(tmp_path_factory.mktemp("postgres"))
    try:
        server.start()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.remove()


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path) -> dict[str, str]:
    """The endpoint and keys in this process's environment (and returned, for subprocesses);
    trials' local scratch under the test's folder."""
    env = {**s3_server.env(), "GMMPVAE_SCRATCH": str(tmp_path / "scratch")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_study(s3_env) -> str:
    """A fresh study location in the bucket."""
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty PostgreSQL database for this test's Optuna study."""
    return pg_server.new_database(f"t_{uuid.uuid4().hex[:10]}")


def subprocess_env(s3_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of a `gmmpvae` subprocess: ours, fake_trials importable by Ray's
    workers."""
    path = os.pathsep.join(p for p in (str(STUDY_TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **s3_env, "PYTHONPATH": path, **extra}


def fake_study(s3_env: dict[str, str], tmp_path: Path, name: str, storage: str, pg_url: str,
               *, epoch_seconds: float, **sections: dict) -> tuple[Path, dict[str, str]]:
    """A study file of fake trials (``epoch_seconds`` an epoch, set in the scratch folder's
    fake.json) stored at ``storage`` with its Optuna study at ``pg_url``, and the environment
    of its `gmmpvae` subprocesses. ``sections``: the study file's other sections."""
    from test_runner import write_study

    scratch = Path(s3_env["GMMPVAE_SCRATCH"])
    scratch.mkdir(parents=True)
    (scratch / "fake.json").write_text(json.dumps({"FAKE_EPOCH_SECONDS": epoch_seconds}))
    path = write_study(tmp_path, name, study={"storage": storage, "optuna_storage": pg_url},
                       **sections)
    return path, subprocess_env(s3_env, GMMPVAE_TRIAL_FUNCTION="fake_trials:fake_trial")
