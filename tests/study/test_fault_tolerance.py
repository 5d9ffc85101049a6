"""A study survives a lost driver (`gmmpvae resume` finishes it: no trial missing, none twice, in
Parquet and in Optuna) and an Optuna database gone past its grace. Trials are
`fake_trials.fake_trial` (seconds, not minutes); the drivers killed are `gmmpvae` subprocesses
(each with its embedded Ray), the in-process studies share the module's ``local_ray``. Lost
nodes: `test_lost_nodes`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def cli(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)


def test_a_lost_driver_is_resumed_without_duplicates(local_ray, tmp_path, capsys):
    """`gmmpvae run` killed (its process group: the driver and its Ray) once two trials are
    recorded; a new driver (`gmmpvae resume`, in this process) finishes the study."""
    import optuna

    from study.cli import main

    fake = {"FAKE_EPOCH_SECONDS": 0.25}
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

    capsys.readouterr()
    assert main(["resume", str(study), "--quiet"]) == 0  # the study's trial function, saved
    output = capsys.readouterr().out
    assert "resuming from" in output or "continuing the Optuna study" in output, output

    check_complete(study, spec, max_epochs=5)
    ostudy = optuna.load_study(study_name=spec.name, storage=optuna_study.open_storage(spec))
    complete = [t.user_attrs["trial_key"] for t in ostudy.get_trials()
                if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(complete) == planned  # each trial_key once among the COMPLETE trials
    assert not [t for t in ostudy.get_trials() if t.state.name == "RUNNING"]
    info = json.loads((study / "study.json").read_text())
    assert info["trial_function"] == "fake_trials:fake_trial"
    # status after the resume: everything completed
    assert main(["status", str(study)]) == 0
    assert f"{len(planned)} COMPLETED" in capsys.readouterr().out


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


def test_a_deleted_record_is_re_run_by_resume_and_two_drivers_exclude(local_ray, tmp_path,
                                                                     capsys):
    """A finished trial whose trial.json was deleted is re-run by resume (Optuna said
    COMPLETE, Tune TERMINATED); a second `gmmpvae run` started beside a live one is refused."""
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
    capsys.readouterr()
    runner.resume_study(str(study), trial_function=fake_trials.fake_trial)
    output = capsys.readouterr().out
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


def test_an_optuna_database_gone_past_the_grace_ends_the_run_and_resume_finishes(
        local_ray, tmp_path, monkeypatch):
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
