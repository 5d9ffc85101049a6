"""A study survives a lost node (a trial resumes from its checkpoint on another node) and a lost
driver (`gmmpvae resume` finishes it: no trial missing, none twice, in Parquet and in Optuna).
Trials are `fake_trials.fake_trial` (seconds, not minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

import fake_trials  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from drivers import kill_group  # noqa: E402
from test_runner import write_study  # noqa: E402

from study import optuna_study, provenance  # noqa: E402
from study import run as runner  # noqa: E402
from study.spec import load_spec  # noqa: E402

pytestmark = pytest.mark.slow


def executed_epochs(study: Path, key: str) -> list[tuple[int, str]]:
    """(epoch, pid) of every epoch the fake trainer ran for a trial, in order."""
    text = (study / "trials" / key / "executed.log").read_text()
    return [(int(e), pid) for e, pid in (line.split() for line in text.splitlines())]


def check_complete(study: Path, spec, max_epochs: int) -> list[dict]:
    """Every planned trial once, COMPLETED, with one epochs row per epoch."""
    planned = sorted(t["trial_key"] for t in spec.plan())
    trials = pq.read_table(study / "results" / "trials.parquet").to_pylist()
    assert sorted(r["trial_key"] for r in trials) == planned
    assert {r["state"] for r in trials} == {"COMPLETED"}
    epochs = pq.read_table(study / "results" / "epochs.parquet").to_pylist()
    for key in planned:
        assert [e["epoch"] for e in epochs if e["trial_key"] == key] == \
            list(range(1, max_epochs + 1))
    test_ll = pq.read_table(study / "results" / "test_ll.parquet").to_pylist()
    assert len(test_ll) == 5 * len(planned)
    assert len({(r["trial_key"], r["image"]) for r in test_ll}) == len(test_ll)
    return trials


def test_a_lost_node_costs_a_retry_from_the_checkpoint(tmp_path, capsys):
    import ray
    from ray.cluster_utils import Cluster

    # a head without CPUs (trials land on the workers) and two workers of one CPU
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()

    markers = tmp_path / "markers"
    markers.mkdir()
    fake = {"FAKE_EPOCH_SECONDS": 0.4, "FAKE_MARKER_DIR": str(markers), "FAKE_MARKER_EPOCH": 3}
    spec = load_spec(str(write_study(
        tmp_path, "nodes", fake=fake, budget={"max_epochs": 8, "patience": 8},
        search={"grid": {"Ms": [1, 2], "Ks": [10], "include_vae": True}},
        failure={"retries": 2}, study={"address": cluster.address})))
    assert len(spec.plan()) == 3
    removed: list[str] = []

    def kill_a_node_mid_trial() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not removed:
            for marker in markers.glob("*.marker"):
                node_id = marker.read_text().strip()
                node = next((w for w in workers if w.node_id == node_id), None)
                if node is not None:
                    cluster.remove_node(node, allow_graceful=False)
                    removed.append(marker.name)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_node_mid_trial, daemon=True)
    killer.start()
    try:  # the runner joins the cluster as `--address` does (our code shipped to its nodes)
        outcome = runner.run_study(spec, trial_function=fake_trials.fake_trial)
    finally:
        killer.join(timeout=5)
        ray.shutdown()
        cluster.shutdown()
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


def cli(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)




def test_a_lost_driver_is_resumed_without_duplicates(tmp_path):
    import optuna

    fake = {"FAKE_EPOCH_SECONDS": 0.4}
    path = write_study(tmp_path, "driver", fake=fake, budget={"max_epochs": 5, "patience": 5})
    spec = load_spec(str(path))
    planned = sorted(t["trial_key"] for t in spec.plan())
    study = tmp_path / "driver"
    env = {**os.environ, provenance.ENV_TRIAL_FUNCTION: "fake_trials:fake_trial"}

    driver = cli(["run", str(path)], env)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # kill it once two trials are done
            done = list((study / "trials").glob("*/trial.json")) if study.exists() else []
            if len(done) >= 2 or driver.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        kill_group(driver)
    output = driver.stdout.read()
    assert 2 <= len(done) < len(planned), output
    assert not (study / "results").exists()  # the driver died before consolidating

    resume = cli(["resume", str(study)], env)
    try:
        output, _ = resume.communicate(timeout=300)
    finally:
        kill_group(resume)
    assert resume.returncode == 0, output
    assert "resuming from" in output or "continuing the Optuna study" in output

    check_complete(study, spec, max_epochs=5)
    ostudy = optuna.load_study(study_name=spec.name, storage=optuna_study.open_storage(spec))
    complete = [t.user_attrs["trial_key"] for t in ostudy.get_trials()
                if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(complete) == planned  # each trial_key once among the COMPLETE trials
    assert not [t for t in ostudy.get_trials() if t.state.name == "RUNNING"]
    info = json.loads((study / "study.json").read_text())
    assert info["trial_function"] == "fake_trials:fake_trial"
    # status after the resume: everything completed
    status = subprocess.run([sys.executable, "-m", "study.cli", "status", str(study)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and f"{len(planned)} COMPLETED" in status.stdout


def test_a_driver_lost_at_the_tuner_pkl_moment_does_not_wedge(tmp_path):
    """Killed as soon as tune/tuner.pkl exists (before Tune's first state save): resume used
    to run one trial per call, forever; now one resume finishes the study."""
    fake = {"FAKE_EPOCH_SECONDS": 0.2}
    path = write_study(tmp_path, "wedge", fake=fake, budget={"max_epochs": 3, "patience": 3})
    spec = load_spec(str(path))
    planned = sorted(t["trial_key"] for t in spec.plan())
    study = tmp_path / "wedge"
    env = {**os.environ, provenance.ENV_TRIAL_FUNCTION: "fake_trials:fake_trial"}
    driver = cli(["run", str(path)], env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            if (study / "tune" / "tuner.pkl").exists():
                break
            time.sleep(0.02)
    finally:
        kill_group(driver)
    assert (study / "tune" / "tuner.pkl").exists()
    resume = cli(["resume", str(study)], env)
    try:
        output, _ = resume.communicate(timeout=300)
    finally:
        kill_group(resume)
    assert resume.returncode == 0, output
    check_complete(study, spec, max_epochs=3)
    assert len(list((study / "trials").glob("*/trial.json"))) == len(planned), output


def test_a_deleted_record_is_re_run_by_resume_and_two_drivers_exclude(tmp_path):
    """A finished trial whose trial.json was deleted is re-run by resume (Optuna said
    COMPLETE, Tune TERMINATED); a second `run` started beside a live one is refused."""
    fake = {"FAKE_EPOCH_SECONDS": 0.2}
    path = write_study(tmp_path, "lost", fake=fake, budget={"max_epochs": 3, "patience": 3})
    spec = load_spec(str(path))
    study = tmp_path / "lost"
    env = {**os.environ, provenance.ENV_TRIAL_FUNCTION: "fake_trials:fake_trial"}
    first = cli(["run", str(path)], env)
    time.sleep(1.0)
    second = cli(["run", str(path)], env)
    try:
        out2, _ = second.communicate(timeout=120)
        out1, _ = first.communicate(timeout=300)
    finally:
        kill_group(second)
        kill_group(first)
    # Whichever took the lock first runs the study; the other is refused in one line.
    codes = sorted([(first.returncode, out1), (second.returncode, out2)])
    assert [c for c, _ in codes] == [0, 2], codes
    refused = codes[1][1]
    assert len(refused.strip().splitlines()) == 1 and (
        "already being run by" in refused or "already holds a study" in refused), refused
    key = sorted(t["trial_key"] for t in spec.plan())[1]
    (study / "trials" / key / "trial.json").unlink()
    before = len([line for line in (study / "trials" / key / "executed.log").read_text()
                  .splitlines()])
    resume = cli(["resume", str(study)], env)
    try:
        output, _ = resume.communicate(timeout=300)
    finally:
        kill_group(resume)
    assert resume.returncode == 0, output
    assert "re-running 1 finished trial" in output, output
    assert (study / "trials" / key / "trial.json").is_file()
    check_complete(study, spec, max_epochs=3)
    after = len((study / "trials" / key / "executed.log").read_text().splitlines())
    assert after == before  # metrics.json was intact: the record is rebuilt, not retrained
    # one COMPLETE Optuna trial per key in the journal, the re-run's key included (issue 17)
    import optuna

    frame = optuna.load_study(study_name=spec.name,
                              storage=optuna_study.open_storage(spec)).trials_dataframe()
    assert len(frame) == len(spec.plan()) and set(frame["state"]) == {"COMPLETE"}
    assert sorted(frame["user_attrs_trial_key"]) == sorted(t["trial_key"] for t in spec.plan())


def test_a_study_whose_workers_are_all_lost_ends_after_the_grace(tmp_path, capsys):
    """0-CPU head + one 1-CPU worker, the worker removed mid-trial: after `stranded_grace`
    the study ends (results consolidated, unfinished trials left for resume, exit status 3
    from the CLI), instead of waiting forever."""
    import ray
    from optuna.trial import TrialState
    from ray.cluster_utils import Cluster

    from study import summary

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    markers = tmp_path / "markers"
    markers.mkdir()
    fake = {"FAKE_EPOCH_SECONDS": 0.4, "FAKE_MARKER_DIR": str(markers), "FAKE_MARKER_EPOCH": 2}
    spec = load_spec(str(write_study(
        tmp_path, "stranded", fake=fake, budget={"max_epochs": 6, "patience": 6},
        search={"grid": {"Ms": [1], "Ks": [10], "include_vae": True}},
        failure={"retries": 2, "stranded_grace": 5}, study={"address": cluster.address})))
    removed: list[str] = []

    def remove_the_worker_mid_trial() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not removed:
            if list(markers.glob("*.marker")):
                cluster.remove_node(worker, allow_graceful=False)
                removed.append("worker")
                return
            time.sleep(0.05)

    killer = threading.Thread(target=remove_the_worker_mid_trial, daemon=True)
    killer.start()
    start = time.monotonic()
    try:
        outcome = runner.run_study(spec, trial_function=fake_trials.fake_trial)
    finally:
        killer.join(timeout=5)
        ray.shutdown()
        cluster.shutdown()
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


def test_an_optuna_database_gone_past_the_grace_ends_the_run_and_resume_finishes(
        tmp_path, monkeypatch):
    """The study's Optuna storage stops answering mid-study (`flaky_storage.Flaky` around its
    journal, through our own `open_storage` seam) for longer than ``outage_grace``: the run
    ends with the searcher's `Unreachable` — raised by `run_study` after Tune stopped, not a
    traceback inside Tune — leaving the trials in flight unfinished; once it answers again,
    `resume_study` finishes the study with each key once (records and Optuna)."""
    import optuna
    from flaky_storage import Flaky
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from study.errors import Unreachable

    fake = {"FAKE_EPOCH_SECONDS": 0.3}
    spec = load_spec(str(write_study(tmp_path, "dbgone", fake=fake,
                                     budget={"max_epochs": 3, "patience": 3},
                                     failure={"outage_grace": 2})))
    planned = sorted(t["trial_key"] for t in spec.plan())
    study = tmp_path / "dbgone"
    storage = Flaky(JournalStorage(JournalFileBackend(spec.optuna_storage_url)))
    monkeypatch.setattr(optuna_study, "open_storage", lambda spec: storage)
    # down for good after seven reported epochs (two trials and a bit, of three epochs)
    storage.fail = lambda name, n: "before" if storage.calls.get(
        "set_trial_intermediate_value", 0) > 7 else None
    with pytest.raises(Unreachable) as caught:
        runner.run_study(spec, trial_function=fake_trials.fake_trial)
    assert str(caught.value).startswith(f"the Optuna database {spec.optuna_storage_url} did "
                                        "not answer for 2 s (last error: server closed the "
                                        "connection unexpectedly); `gmmpvae resume")
    assert len(list((study / "trials").glob("*/trial.json"))) < len(planned)
    storage.fail = lambda name, n: None
    runner.resume_study(str(study), trial_function=fake_trials.fake_trial)
    check_complete(study, spec, max_epochs=3)
    trials = optuna.load_study(study_name=spec.name, storage=storage).get_trials()
    assert sorted(t.user_attrs["trial_key"] for t in trials) == planned  # no extra trial
    assert {t.state.name for t in trials} == {"COMPLETE"}
