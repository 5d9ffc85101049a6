"""A study survives a lost node: the trial on it resumes from its checkpoint on another node;
and a study whose every worker is lost ends after ``stranded_grace`` instead of waiting forever.
Each test builds its own cluster (`ray.cluster_utils.Cluster`: a 0-CPU head, 1-CPU workers) and
joins it as ``--address`` does; trials are `fake_trials.fake_trial` (seconds, not minutes).
Apart from `test_fault_tolerance`, whose in-process studies share one local Ray."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from node_loss import run_losing_a_node
from test_fault_tolerance import check_complete, executed_epochs
from test_runner import write_study

from study import optuna_study
from study.spec import load_spec

pytestmark = pytest.mark.slow


def cluster_study(tmp_path: Path, name: str, workers: int, marker_epoch: int, max_epochs: int,
                  Ms: list[int], **failure: float) -> tuple[Any, list[Any], Path, Any]:
    """A cluster — a head without CPUs (trials land on the workers) and ``workers`` workers of
    one CPU — and a fake grid study joining it as ``--address`` does (our code shipped to its
    nodes), whose trials write a marker (their node's id) after ``marker_epoch``: (cluster,
    workers, markers folder, spec)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(workers)]
    cluster.wait_for_nodes()
    markers = tmp_path / "markers"
    markers.mkdir()
    fake = {"FAKE_EPOCH_SECONDS": 0.4, "FAKE_MARKER_DIR": str(markers),
            "FAKE_MARKER_EPOCH": marker_epoch}
    spec = load_spec(str(write_study(
        tmp_path, name, fake=fake, budget={"max_epochs": max_epochs, "patience": max_epochs},
        search={"grid": {"Ms": Ms, "Ks": [10], "include_vae": True}},
        failure=failure, study={"address": cluster.address})))
    return cluster, nodes, markers, spec


def test_a_lost_node_costs_a_retry_from_the_checkpoint(tmp_path, capsys):
    import ray

    cluster, workers, markers, spec = cluster_study(tmp_path, "nodes", workers=2,
                                                    marker_epoch=3, max_epochs=8, Ms=[1, 2],
                                                    retries=2)
    assert len(spec.plan()) == 3
    outcome, removed = run_losing_a_node(cluster, workers, markers, spec)
    assert outcome.slots == 2 and not ray.is_initialized()
    assert removed, "no trial reached the marker epoch"
    # Quiet by default: Tune's traceback of the lost actor is in the study's log, not here.
    terminal = capsys.readouterr()
    assert "Traceback" not in terminal.out + terminal.err
    assert "retrying" in terminal.out
    assert "Traceback" in (tmp_path / "nodes" / "logs" / "driver.log").read_text()

    study = tmp_path / "nodes"
    trials = check_complete(study, spec, max_epochs=8)
    resumed = [r for r in trials if r["attempts"] > 1]
    assert len(resumed) == 1, [r["attempts"] for r in trials]
    key = resumed[0]["trial_key"]
    runs = executed_epochs(study, key)
    pids = list(dict.fromkeys(pid for _, pid in runs))
    assert len(pids) == 2  # two attempts, in two processes
    first, second = ([e for e, p in runs if p == pid] for pid in pids)
    assert first[:3] == [1, 2, 3]
    assert second[0] > 3 and second[-1] == 8  # resumed after the checkpointed epoch 3
    assert second == list(range(second[0], 9))
    for other in trials:
        if other["trial_key"] != key:
            assert [e for e, _ in executed_epochs(study, other["trial_key"])] == \
                list(range(1, 9))


def test_a_study_whose_workers_are_all_lost_ends_after_the_grace(tmp_path, capsys):
    """0-CPU head + one 1-CPU worker, the worker removed mid-trial: after `stranded_grace`
    the study ends (results consolidated, unfinished trials left for resume, exit status 3
    from the CLI), instead of waiting forever."""
    from optuna.trial import TrialState

    from study import summary

    cluster, workers, markers, spec = cluster_study(tmp_path, "stranded", workers=1,
                                                    marker_epoch=2, max_epochs=6, Ms=[1],
                                                    retries=2, stranded_grace=5)
    start = time.monotonic()
    outcome, removed = run_losing_a_node(cluster, workers, markers, spec)
    seconds = time.monotonic() - start
    assert removed and outcome.stranded, capsys.readouterr().out
    assert summary.stranded_exit(spec, outcome) == summary.STRANDED_EXIT
    err = capsys.readouterr().err
    assert "gmmpvae resume" in err and "unfinished" in err
    study = tmp_path / "stranded"
    assert (study / "results" / "trials.parquet").is_file()
    states = [r["state"] for r in pq.read_table(study / "results" / "trials.parquet")
              .to_pylist()]
    assert "PRUNED" not in states and len(states) < len(spec.plan())
    ostudy = optuna_study.existing_study(spec)
    assert not [t for t in ostudy.get_trials() if t.state == TrialState.PRUNED]
    print(f"stranded study ended {seconds:.1f} s after it started")
