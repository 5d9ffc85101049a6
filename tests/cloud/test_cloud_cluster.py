"""A study's whole life through the command line on a loopback multi-node Ray cluster — a
`ray.cluster_utils.Cluster` head with no CPUs and two 1-CPU worker nodes — with the study on
S3 and its Optuna study in PostgreSQL: ``gmmpvae run --address``, the driver SIGKILLed
mid-study, ``gmmpvae resume --address``, ``status`` and ``report`` (issue 17). The trials run
on the worker nodes only (the head has no CPU), so every record reaches the bucket by upload
from a node's scratch folder.

Marked ``integration`` (with the other cloud tests); about 1 minute on 2 cores."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import fake_study
from test_cloud_study import (
    REPO,
    check_each_key_once,
    cli,
    finish,
    kill_after_records,
    optuna_complete,
    records,
    store,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def loopback_cluster(s3_env):
    """Started after ``s3_env``: the nodes' trial workers inherit the endpoint, keys and
    scratch folder from this process's environment, as a user's nodes have theirs."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_run_kill_resume_status_report_on_a_cluster(s3_env, s3_study, pg_url, tmp_path,
                                                    loopback_cluster):
    path, env = fake_study(
        s3_env, tmp_path, "c", s3_study, pg_url, epoch_seconds=0.4,
        search={"grid": {"Ms": [1, 2, 3], "Ks": [10], "include_vae": True}},
        budget={"max_epochs": 5, "patience": 5})
    from study.spec import load_spec

    planned = sorted(t["trial_key"] for t in load_spec(str(path)).plan())
    assert len(planned) == 4
    address = loopback_cluster.address
    driver = cli(["run", str(path), "--address", address, "--quiet"], env)
    kill_after_records(driver, s3_study, 2)
    out = driver.stdout.read()
    assert "2 slot(s) of 1 CPU" in out, out  # the two worker nodes, not this machine's CPUs
    assert 2 <= len(records(s3_study)) < len(planned), out

    resume = cli(["resume", s3_study, "--address", address, "--quiet"], env)
    out = finish(resume)
    assert resume.returncode == 0, out
    check_each_key_once(s3_study, planned, max_epochs=5, n_test=5)
    complete, trials = optuna_complete(pg_url, "c")
    assert complete == planned, out
    assert not [t for t in trials if t.state.name == "RUNNING"]

    status = subprocess.run([sys.executable, "-m", "study.cli", "status", s3_study], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "4 COMPLETED" in status.stdout, status.stdout
    report = subprocess.run([sys.executable, "-m", "study.cli", "report", s3_study], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    fs, root = store(s3_study)
    assert fs.get_file_info(f"{root}/report/index.html").size > 1000
