"""Joining a cluster that will not have us: a token-protected head (`ray start --head`, token
authentication on by default in Ray 2.60) refuses a driver without the token; the refusal is one
line naming RAY_AUTH_MODE=token, exit status 2, nothing written. The head runs in its own
process group and is stopped by its group's PID (`drivers.kill_group`), never with `ray stop`.
A real server (a Ray head of its own, ≈ 30 s on 2 cores): marked ``integration``, run by
``.ci/run``'s second step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1]  # tests/study: the drivers' helpers

from drivers import kill_group  # noqa: E402

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_token_protected_cluster_is_named_in_one_line(tmp_path):
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="gm11-", dir="/tmp")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--port", str(port), "--num-cpus", "0",
         "--temp-dir", temp_dir, "--include-dashboard", "false", "--block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        import socket

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        time.sleep(3)
        driver = subprocess.run(
            [sys.executable, "-m", "study.cli", "run", "quickstart", "--address",
             f"127.0.0.1:{port}", "--storage", str(tmp_path / "s"), "--max-epochs", "1"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    finally:
        kill_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert driver.returncode == 2, driver.stderr[-2000:]
    lines = driver.stderr.strip().splitlines()
    assert len(lines) == 1 and "RAY_AUTH_MODE=token" in lines[0], driver.stderr[-2000:]
    assert not (tmp_path / "s").exists()
