"""Ray for a study: the loopback workaround (fails loudly when a Ray upgrade breaks it) and the
scoping of every environment change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from study.tune import session as ray_session

REPO = Path(__file__).resolve().parents[3]

# Runs in a fresh interpreter, as `gmmpvae run` does: nothing imported Ray before the session.
PROBE = r'''
import json, os, sys
from study.tune import session as ray_session
from study.spec import load_spec

def tree(root):
    parents = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                parents[int(p)] = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    kids, todo = {root}, [root]
    while todo:
        x = todo.pop()
        for c, pp in parents.items():
            if pp == x and c not in kids:
                kids.add(c); todo.append(c)
    return kids

def socket_inodes(pids):
    out = set()
    for p in pids:
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    link = os.readlink(f"/proc/{p}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    out.add(link[8:-1])
        except OSError:
            pass
    return out

def listeners(inodes):
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                rows.append(f[1].split(":")[0])
    return rows

spec = load_spec("quickstart", {"study.storage": sys.argv[1]})
with ray_session.session(spec) as slots:
    import ray
    node_ip = ray.util.get_node_ip_address()
    hex_ips = listeners(socket_inodes(tree(os.getpid())))
    during = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
print(json.dumps({"slots": slots, "node_ip": node_ip, "listeners": hex_ips,
                  "env_after": os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"),
                  "initialized_after": ray.is_initialized()}))
'''
LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="needs Linux /proc")
def test_embedded_ray_listens_on_loopback_only(tmp_path):
    """The workaround of `ray_session._LOOPBACK_ENV` (Ray 2.60): the embedded node's address is
    127.0.0.1 and no process of it listens on another interface. If this fails after a Ray
    upgrade, the variable no longer does this: find Ray's new way and change that one place."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "s")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["node_ip"] == "127.0.0.1", seen
    assert seen["listeners"], "no Ray listener found: the probe itself is broken"
    assert set(seen["listeners"]) <= LOOPBACK_HEX, f"Ray listens beyond loopback: {seen}"
    assert seen["slots"] >= 1 and not seen["initialized_after"]
    assert seen["env_after"] is None  # the variable was scoped to starting Ray


def test_scoped_environ_restores_and_respects_the_users_values(monkeypatch):
    monkeypatch.setenv("GMMPVAE_T_KEEP", "user")
    monkeypatch.delenv("GMMPVAE_T_NEW", raising=False)
    with ray_session.scoped_environ({"GMMPVAE_T_KEEP": "ours", "GMMPVAE_T_NEW": "1"}):
        assert os.environ["GMMPVAE_T_KEEP"] == "user" and os.environ["GMMPVAE_T_NEW"] == "1"
    assert os.environ["GMMPVAE_T_KEEP"] == "user" and "GMMPVAE_T_NEW" not in os.environ


def test_quiet_tune_is_scoped(monkeypatch):
    import logging

    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    before = logger.level
    with ray_session.quiet_tune(verbose=False):
        assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1"
        assert logger.level == logging.ERROR
    assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ and logger.level == before
