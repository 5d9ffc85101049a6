"""Watching a study with the real parts: one small study of fake trials on one local Ray,
tracked live by TensorBoard, MLflow and W&B (offline), one trial crashed and re-run by
``resume --rerun-errored``; then its event files read back with TensorBoard's reader, its
MLflow store queried with MlflowClient, its W&B offline folders, ``gmmpvae export`` to both,
and ``gmmpvae dashboard`` over its Optuna journal (HTTP API and headless Chromium)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1]  # tests/study: fake_trials

import fake_trials  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from study import run as runner  # noqa: E402
from study.cli.main import main  # noqa: E402
from study.spec import load_spec  # noqa: E402
from study.watch import trackers  # noqa: E402

pytestmark = pytest.mark.slow
for _module in ("tensorboard", "mlflow", "wandb", "optuna_dashboard"):
    pytest.importorskip(_module, reason="the tracking and dashboard extras (pip install -e "
                        "'.[dev]')")

CRASHED = "m2-k10"
STUDY_FILE = """
[study]
name = "watch"
storage = "{storage}"
[data]
dataset = "digits"
[search]
space = "quickstart"
seeds = 1
[search.grid]
Ms = [1, 2]
Ks = [10]
[model]
latent_dim = 4
hidden_dim = 16
[budget]
max_epochs = 4
warmup_epochs = 1
patience = 4
[resources]
cpus_per_trial = 1
[failure]
retries = 0
[tracking]
tensorboard = true
mlflow = true
wandb = {{project = "gmmpvae-test", mode = "offline"}}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The tracked study (3 trials, 4 epochs each), run then resumed; its printed output."""
    import ray

    root = tmp_path_factory.mktemp("watch")
    storage = root / "watch"
    storage.mkdir()
    (storage / "fake.json").write_text(json.dumps({
        "FAKE_EPOCH_SECONDS": "0.3", "FAKE_CRASH_MATCH": CRASHED,
        "FAKE_CRASH_DIR": str(root)}))
    path = root / "watch.toml"
    path.write_text(STUDY_FILE.format(storage=storage))
    spec = load_spec(str(path))
    os.environ["GMMPVAE_PROGRESS_INTERVAL"] = "0.5"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runner.run_study(spec, trial_function=fake_trials.fake_trial, quiet=False)
            runner.resume_study(str(storage), rerun_errored=True, quiet=False)
    finally:
        ray.shutdown()
        os.environ.pop("GMMPVAE_PROGRESS_INTERVAL", None)
    trials = pq.read_table(storage / "results" / "trials.parquet").to_pylist()
    return storage, spec, {r["trial_key"]: r for r in trials}, out.getvalue()


def test_live_progress_lines_while_trials_run(study):
    _, spec, trials, output = study
    lines = output.splitlines()
    assert any(line.startswith("study watch  0 done · ") for line in lines), output
    epochs = [line for line in lines if " epoch " in line and " epochs/s" in line]
    assert epochs and all(line.startswith("  ") and "/4  best val " in line for line in epochs)
    assert any(f"-{CRASHED}-" in line for line in epochs)
    # the resumed driver counts the trials its predecessor finished
    assert any(line.startswith("study watch  2 done · 1 running · 0 pending · 0 failed")
               for line in lines), output


def _accumulator(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _hparams(acc) -> dict[str, object]:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"])
    out = {}
    for name, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = getattr(value, kind)
    return out


def test_tensorboard_one_run_per_trial_with_epochs_tests_and_hparams(study):
    storage, spec, trials, _ = study
    runs = sorted(p.name for p in (storage / "tensorboard").iterdir())
    assert runs == sorted(t["trial_key"] for t in spec.plan())
    for key, row in trials.items():
        acc = _accumulator(storage / "tensorboard" / key)
        tags = set(acc.Tags()["scalars"])
        assert {"train/loss", "train/re", "train/kl", "val/loss", "val/re", "val/kl", "beta",
                "epoch_seconds", "test/ll", "test/kl", "test/kl_mc",
                "test/elbo_bound", "final/best_val_loss"} <= tags, tags
        steps = sorted({e.step for e in acc.Scalars("val/loss")})
        assert steps == [1, 2, 3, 4]
        [ll] = acc.Scalars("test/ll")
        assert ll.step == 4 and ll.value == pytest.approx(row["test_ll"], rel=1e-6)
        hp = _hparams(acc)
        assert hp["M"] == row["M"] and hp["K"] == row["K"] and hp["seed"] == row["seed"]
        assert hp["arch"] == "mlp" and hp["kl_estimator"] == row["kl_estimator"]
        assert json.loads(hp["pi"]) == pytest.approx(row["pi"])


def test_mlflow_one_run_per_trial_even_across_the_resume(study):
    from mlflow import MlflowClient

    storage, spec, trials, _ = study
    client = MlflowClient(tracking_uri=f"sqlite:///{storage}/mlflow.db")
    experiment = client.get_experiment_by_name("watch")
    runs = client.search_runs([experiment.experiment_id])
    keys = [r.data.tags[trackers.KEY_TAG] for r in runs]
    assert sorted(keys) == sorted(trials)  # the re-run trial kept its run
    for run in runs:
        row = trials[run.data.tags[trackers.KEY_TAG]]
        assert run.info.status == "FINISHED"
        assert run.data.params["M"] == str(row["M"]) and run.data.params["arch"] == "mlp"
        assert run.data.params["seed"] == str(row["seed"])
        history = client.get_metric_history(run.info.run_id, "val/loss")
        assert sorted({m.step for m in history}) == [1, 2, 3, 4]
        assert run.data.metrics["test/ll"] == pytest.approx(row["test_ll"])
    crashed = next(r for r in runs if f"-{CRASHED}-" in r.data.tags[trackers.KEY_TAG])
    steps = [m.step for m in client.get_metric_history(crashed.info.run_id, "val/loss")]
    assert sorted(steps) == [1, 1, 2, 3, 4]  # epoch 1 of the crashed attempt, then the re-run


def test_wandb_offline_runs_one_id_per_trial(study):
    storage, _, trials, _ = study
    folders = sorted((storage / "wandb" / "wandb").glob("offline-run-*"))
    by_id: dict[str, list[Path]] = {}
    for folder in folders:
        by_id.setdefault(folder.name.split("-", 3)[-1], []).append(folder)
    assert sorted(by_id) == sorted(trackers.run_id("watch", key) for key in trials)
    crashed = trackers.run_id("watch", next(k for k in trials if f"-{CRASHED}-" in k))
    assert len(by_id[crashed]) == 2  # the resumed study reopened the same run id
    for run, folders_of_run in by_id.items():
        data = b"".join((f / f"run-{run}.wandb").read_bytes() for f in folders_of_run)
        assert b"val/loss" in data and b"test/ll" in data


def test_export_writes_the_same_runs_from_parquet_and_skips_what_is_there(study, tmp_path,
                                                                          capsys):
    storage, _, trials, _ = study
    out = tmp_path / "tb"
    uri = f"sqlite:///{tmp_path}/export.db"
    assert main(["export", str(storage), "--to", "tensorboard", "--out", str(out)]) == 0
    assert main(["export", str(storage), "--to", "mlflow", "--mlflow-uri", uri]) == 0
    assert main(["export", str(storage), "--to", "mlflow", "--mlflow-uri", uri]) == 0
    printed = capsys.readouterr().out
    assert "3 trial(s) written to mlflow" in printed and "0 trial(s) written to mlflow" in printed
    assert "3 already there" in printed
    for key, row in trials.items():
        live, exported = _accumulator(storage / "tensorboard" / key), _accumulator(out / key)
        assert set(exported.Tags()["scalars"]) == set(live.Tags()["scalars"])
        assert [e.step for e in exported.Scalars("val/loss")] == [1, 2, 3, 4]
        assert exported.Scalars("test/ll")[0].value == pytest.approx(row["test_ll"], rel=1e-6)
        assert _hparams(exported)["M"] == row["M"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("watch").experiment_id])
    assert sorted(r.data.tags[trackers.KEY_TAG] for r in runs) == sorted(trials)


def test_export_refuses_a_folder_that_is_not_a_study(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--to", "tensorboard"]) == 2
    assert "is not a study folder" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(study):
    storage = study[0]
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", "dashboard", str(storage),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as response:
                    studies = json.loads(response.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read() if proc.stdout else "") from None
                time.sleep(0.5)
        yield base, studies
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    first = proc.stdout.readline() if proc.stdout else ""
    assert f"http://127.0.0.1:{port}/dashboard/" in first


def test_dashboard_api_lists_the_trials_with_their_params(study, dashboard):
    _, _, trials, _ = study
    base, studies = dashboard
    [entry] = [s for s in studies["study_summaries"] if s["study_name"] == "watch"]
    with urllib.request.urlopen(f"{base}/api/studies/{entry['study_id']}", timeout=10) as r:
        detail = json.loads(r.read())
    listed = {}
    for t in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        params = {p["name"]: p["param_external_value"] for p in t["params"]}
        listed[attrs.get("trial_key")] = (t["state"], params)
    completed = {k for k, (state, _) in listed.items() if state == "Complete"}
    assert completed == set(trials)
    for key, row in trials.items():
        _, params = listed[key]
        assert params["M"] == str(row["M"]) and params["prior"] == row["prior"]


def test_dashboard_page_renders_in_a_real_browser(dashboard, browser, tmp_path):
    base, _ = dashboard
    shot = browser.screenshot(f"{base}/dashboard/", tmp_path / "dashboard.png")
    colours = browser.colours(shot)
    print(f"dashboard screenshot: {colours} distinct colours")
    assert colours > 20
    dom = browser.dom(f"{base}/dashboard/")
    assert "watch" in dom and "MINIMIZE" in dom.upper()  # the study's card, drawn by its JS


def test_export_and_the_dashboard_refusal_import_no_ray(study, tmp_path):
    """Like status and a dry run (tests/study/test_no_ray.py): a fresh interpreter."""
    storage = study[0]
    script = (
        "import json, sys\n"
        "from study.cli import main\n"
        "codes = [main(['export', sys.argv[1], '--to', 'tensorboard', '--out', sys.argv[2]]),\n"
        "         main(['dashboard', sys.argv[2]])]\n"
        "print(json.dumps({'codes': codes, 'ray': sorted(m for m in sys.modules\n"
        "                   if m == 'ray' or m.startswith('ray.'))}))\n")
    out = subprocess.run([sys.executable, "-c", script, str(storage), str(tmp_path / "tb")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 2], "ray": []}
    assert "is not a study folder" in out.stderr
