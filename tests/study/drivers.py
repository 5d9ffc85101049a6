"""Drivers under test run as subprocesses in their own process group: stopping one by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (its embedded Ray: GCS, raylet, workers), by
    its group's PID, and wait until the group is gone."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError("processes of the killed driver are still alive")
