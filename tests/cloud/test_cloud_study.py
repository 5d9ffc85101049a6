"""The cloud path for real (issue 17): studies on a SeaweedFS S3 bucket with their Optuna study
in PostgreSQL, both real servers on loopback, driven through ``gmmpvae`` subprocesses on the
embedded Ray, configured as a user configures them (``AWS_ENDPOINT_URL`` and keys in the
environment, ``--storage s3://…``, ``--optuna-storage postgresql+psycopg://…``).

Marked ``integration`` (the second step of ``.ci/run``; about 4–6 minutes on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import fake_study, subprocess_env
from drivers import kill_group
from test_runner import write_study

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(process: subprocess.Popen, timeout: float = 400) -> str:
    """The process's output once it ended; past ``timeout`` it is killed and the test fails
    with the tail of what it printed (where it hung)."""
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        out, _ = process.communicate()
        raise AssertionError(f"{' '.join(process.args[3:])} still running after {timeout:.0f} s;"
                             f" its output ended with:\n{out[-4000:]}") from None
    finally:
        kill_group(process)
    return out




def store(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri)


def table(uri: str, name: str) -> list[dict]:
    fs, root = store(uri)
    return pq.read_table(f"{root}/results/{name}", filesystem=fs).to_pylist()


def records(uri: str) -> list[str]:
    fs, root = store(uri)
    found = fs.get_file_info(pafs.FileSelector(f"{root}/trials", allow_not_found=True,
                                               recursive=True))
    return [i.path for i in found if i.path.endswith("/trial.json")]


def kill_after_records(driver: subprocess.Popen, uri: str, n: int, timeout: float = 240) -> None:
    """SIGKILL the driver (and its Ray) once ``n`` trial records are on the store (or it ended,
    or ``timeout`` passed)."""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and driver.poll() is None:
            if len(records(uri)) >= n:
                break
            time.sleep(0.3)
    finally:
        kill_group(driver)


def optuna_complete(pg_url: str, name: str) -> tuple[list[str], list]:
    import optuna

    study = optuna.load_study(study_name=name, storage=pg_url)
    trials = study.get_trials(deepcopy=False)
    complete = [t.user_attrs.get("trial_key") for t in trials if t.state.name == "COMPLETE"]
    return sorted(complete), trials


def scratch_of(scratch: Path, tag: str) -> Path:
    """The scratch folder of the fake trial tagged ``m<M>-k<K>-<prior>-s<seed>``."""
    for folder in (scratch / "gmmpvae-trials").iterdir():
        cfg = json.loads((folder / "config.json").read_text())
        if f"m{cfg['M']}-k{cfg['K']}-{cfg['prior']}-s{cfg['seed']}" == tag:
            return folder
    raise AssertionError(f"no scratch folder for {tag}")


def storage_text(fs: pafs.FileSystem, path: str) -> str:
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def check_each_key_once(uri: str, planned: list[str], max_epochs: int, n_test: int) -> None:
    trials = table(uri, "trials.parquet")
    assert sorted(r["trial_key"] for r in trials) == planned
    assert {r["state"] for r in trials} == {"COMPLETED"}
    epochs = table(uri, "epochs.parquet")
    for key in planned:
        assert [e["epoch"] for e in epochs if e["trial_key"] == key] == \
            list(range(1, max_epochs + 1)), key
    test_ll = table(uri, "test_ll.parquet")
    assert len(test_ll) == n_test * len(planned)
    assert len({(r["trial_key"], r["image"]) for r in test_ll}) == len(test_ll)


def test_a_quickstart_lives_on_s3_and_postgres(s3_env, s3_study, pg_url, tmp_path):
    """run (real trials) → status → report (to the store, and to a local --out)."""
    env = subprocess_env(s3_env)
    run = cli(["run", "quickstart", "--name", "q", "--storage", s3_study, "--optuna-storage",
               pg_url, "--max-epochs", "2", "--seeds", "1", "--is-samples", "20"], env)
    out = finish(run)
    assert run.returncode == 0, out
    assert "7 trial(s) recorded (7 COMPLETED)" in out, out
    trials = table(s3_study, "trials.parquet")
    planned = sorted(r["trial_key"] for r in trials)
    assert len(planned) == 7
    complete, all_trials = optuna_complete(pg_url, "q")
    assert complete == planned and len(all_trials) == 7

    status = subprocess.run([sys.executable, "-m", "study.cli", "status", s3_study], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "7 COMPLETED" in status.stdout, status.stdout

    report = subprocess.run([sys.executable, "-m", "study.cli", "report", s3_study], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    assert f"report: {s3_study}/report/index.html" in report.stdout
    fs, root = store(s3_study)
    assert fs.get_file_info(f"{root}/report/index.html").size > 1000
    assert fs.get_file_info(f"{root}/report/tables/table1.csv").type == pafs.FileType.File
    local = tmp_path / "rep"
    report = subprocess.run([sys.executable, "-m", "study.cli", "report", s3_study, "--out",
                             str(local)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    assert (local / "index.html").is_file() and (local / "tables" / "table1.csv").is_file()
    rows = (local / "tables" / "table1.csv").read_text().splitlines()
    assert len(rows) == 1 + 7  # one model per trial (one seed each)
    # Figures 5-9 from the trials' images on the store: both images of each of the 7 models
    assert len(list((local / "reconstructions").glob("*.png"))) == 2 * 7


def test_a_killed_driver_is_resumed_with_each_key_once(s3_env, s3_study, pg_url, tmp_path):
    """SIGKILL the driver (and its Ray) after two trials; `resume` finishes the study: every
    key once in trials/epochs/test_ll, once COMPLETE in Optuna, nothing RUNNING."""
    path, env = fake_study(s3_env, tmp_path, "k", s3_study, pg_url, epoch_seconds=0.4,
                           budget={"max_epochs": 5, "patience": 5})
    from study.spec import load_spec

    planned = sorted(t["trial_key"] for t in load_spec(str(path)).plan())
    driver = cli(["run", str(path)], env)
    kill_after_records(driver, s3_study, 2)
    done = records(s3_study)
    assert 2 <= len(done) < len(planned), driver.stdout.read()
    start = time.monotonic()
    resume = cli(["resume", s3_study], env)
    out = finish(resume)
    print(f"resume after SIGKILL: {time.monotonic() - start:.1f} s")
    assert resume.returncode == 0, out
    check_each_key_once(s3_study, planned, max_epochs=5, n_test=5)
    complete, trials = optuna_complete(pg_url, "k")
    assert complete == planned, out
    assert not [t for t in trials if t.state.name == "RUNNING"]


def test_a_torn_trial_folder_on_s3_is_detected_and_re_run(s3_env, s3_study, pg_url,
                                                          tmp_path):
    """A trial whose epochs.parquet was half-uploaded: `status` names it, `resume` sets it
    aside and re-runs that trial; the rest is reported; Optuna keeps one COMPLETE per key."""
    path, env = fake_study(s3_env, tmp_path, "torn", s3_study, pg_url, epoch_seconds=0.05)
    scratch = Path(s3_env["GMMPVAE_SCRATCH"])
    run = cli(["run", str(path)], env)
    out = finish(run)
    assert run.returncode == 0, out
    planned = sorted(r["trial_key"] for r in table(s3_study, "trials.parquet"))
    key = planned[2]
    fs, root = store(s3_study)
    target = f"{root}/trials/{key}/epochs.parquet"
    with fs.open_input_stream(target) as f:
        data = f.read()
    with fs.open_output_stream(target) as f:  # half an upload
        f.write(data[: len(data) // 2])
    import shutil

    shutil.rmtree(scratch / "gmmpvae-trials", ignore_errors=True)  # another machine resumes
    status = subprocess.run([sys.executable, "-m", "study.cli", "status", s3_study], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    assert key in status.stdout + status.stderr, status.stdout + status.stderr
    resume = cli(["resume", s3_study], env)
    out = finish(resume)
    assert resume.returncode == 0, out
    assert f"trial {key}: epochs.parquet torn by a crash" in out, out
    check_each_key_once(s3_study, planned, max_epochs=3, n_test=5)
    complete, _ = optuna_complete(pg_url, "torn")
    assert complete == planned, out  # the re-run added no second COMPLETE trial for its key
    import optuna

    frame = optuna.load_study(study_name="torn", storage=pg_url).trials_dataframe()
    assert len(frame) == len(planned)  # what optuna-dashboard lists: one row per key
    assert sorted(frame["user_attrs_trial_key"]) == planned
    assert set(frame["state"]) == {"COMPLETE"}


def test_a_lost_node_resumes_its_trial_from_the_uploaded_checkpoint(s3_env, s3_study, pg_url,
                                                                    tmp_path, capsys):
    """On a loopback `cluster_utils` cluster with an S3 study, the node running a trial is
    removed after its epoch 3 and its local scratch wiped (a lost machine's disk): the retry
    on the other node continues from the checkpoint Tune uploaded to the bucket."""
    import shutil

    from node_loss import run_losing_a_node
    from ray.cluster_utils import Cluster

    from study.spec import load_spec

    scratch = Path(s3_env["GMMPVAE_SCRATCH"])
    markers = tmp_path / "markers"
    markers.mkdir()
    scratch.mkdir(parents=True)
    (scratch / "fake.json").write_text(json.dumps({
        "FAKE_EPOCH_SECONDS": 0.4, "FAKE_MARKER_DIR": str(markers), "FAKE_MARKER_EPOCH": 3}))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    spec = load_spec(str(write_study(
        tmp_path, "nodes", budget={"max_epochs": 8, "patience": 8},
        search={"grid": {"Ms": [1, 2], "Ks": [10], "include_vae": True}},
        failure={"retries": 2},
        study={"address": cluster.address, "storage": s3_study, "optuna_storage": pg_url})))

    def wiped(marker: Path) -> str:
        lost = scratch_of(scratch, marker.stem)
        shutil.rmtree(lost)  # the lost machine's disk goes with it
        return lost.name

    outcome, removed = run_losing_a_node(cluster, workers, markers, spec, within=180,
                                         lost=wiped)
    assert removed, "no trial reached the marker epoch"
    assert outcome.slots == 2
    planned = sorted(t["trial_key"] for t in spec.plan())
    check_each_key_once(s3_study, planned, max_epochs=8, n_test=5)
    trials = table(s3_study, "trials.parquet")
    resumed = [r for r in trials if r["attempts"] > 1]
    assert [r["trial_key"] for r in resumed] == removed, [r["attempts"] for r in trials]
    # the second attempt's log (its scratch was wiped): it began after the uploaded epoch 3
    fs, root = store(s3_study)
    log = storage_text(fs, f"{root}/trials/{removed[0]}/executed.log")
    epochs = [int(line.split()[0]) for line in log.splitlines()]
    assert epochs[0] > 3 and epochs == list(range(epochs[0], 9)), epochs
    complete, _ = optuna_complete(pg_url, "nodes")
    assert complete == planned
    shutil.rmtree(scratch, ignore_errors=True)
