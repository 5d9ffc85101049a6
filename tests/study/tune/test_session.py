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


def test_ray_and_optuna_lines_go_to_the_study_log_not_the_terminal(tmp_path):
    """Without ``verbose``, during a run: Ray's and Optuna's log records (Optuna's RDB storage
    warns, SQL and all, when a query fails in a database outage we announce ourselves) go to
    STUDY/logs/driver.log and to no console handler; after the block each logger has its own
    handlers and propagation back."""
    import logging

    import optuna

    optuna.logging.enable_default_handler()  # Optuna's console handler, as in a run
    loggers = [logging.getLogger(name) for name in ("optuna", "ray")]
    before = [(set(lg.handlers), lg.propagate) for lg in loggers]
    assert any(type(h) is logging.StreamHandler for h in loggers[0].handlers)
    study = tmp_path / "study"
    study.mkdir()
    with ray_session.quiet_tune(verbose=False, study_dir=str(study)):
        for lg in loggers:  # no console handler; ours to the file; nothing to the root's
            assert not [h for h in lg.handlers if type(h) is logging.StreamHandler]
            assert [h for h in lg.handlers if getattr(h, "baseFilename", "").endswith(
                ray_session.DRIVER_LOG)] and not lg.propagate
        logging.getLogger("optuna.storages").warning("Caught an error from sqlalchemy: cut")
        logging.getLogger("ray.tune").warning("a node was lost")
    log = (study / "logs" / ray_session.DRIVER_LOG).read_text(encoding="utf-8")
    assert "WARNING optuna.storages: Caught an error from sqlalchemy: cut" in log
    assert "WARNING ray.tune: a node was lost" in log
    assert [(set(lg.handlers), lg.propagate) for lg in loggers] == before
