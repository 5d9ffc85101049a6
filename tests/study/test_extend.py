"""``gmmpvae extend`` through the command line (docs/BUDGETS.md): a real digits grid grown from 2
to 4 epochs holds both budgets once each, its continued trial equal to a 4-epoch run from
scratch; carried trials and new seeds with fake trials; refusals in one line with nothing
written; ``status`` and ``report`` read the extended study. One Ray for the module
(``local_ray``, conftest.py; the SIGKILL test's drivers are subprocesses with their own)."""

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
import optuna  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from drivers import kill_group  # noqa: E402
from test_runner import write_study  # noqa: E402

from study import cli, extend, optuna_study, provenance, store  # noqa: E402
from study import run as runner  # noqa: E402
from study.spec import load_spec, load_study  # noqa: E402


def results(study: Path, name: str) -> list[dict]:
    return pq.read_table(study / "results" / name).to_pylist()


def optuna_by_state(study: Path) -> dict[str, list[str]]:
    """trial_key of every Optuna trial of the study and its extension steps, by state."""
    spec, _ = load_study(str(study))
    storage = optuna_study.open_storage(spec)
    out: dict[str, list[str]] = {}
    for name in optuna_study.study_names(spec, storage):
        for t in optuna.load_study(study_name=name, storage=storage).get_trials():
            out.setdefault(t.state.name, []).append(t.user_attrs.get("trial_key"))
    return {state: sorted(keys) for state, keys in out.items()}


def check_budgets_once(study: Path, budgets: dict[int, int], n_test: int) -> list[dict]:
    """Every (configuration, budget) once in trials/epochs/test_ll; ``budgets``: trials per
    budget. A trial's epochs are 1 … epochs_run, under its own key."""
    trials = results(study, "trials.parquet")
    keys = [r["trial_key"] for r in trials]
    assert len(keys) == len(set(keys))
    assert {b: sum(r["max_epochs"] == b for r in trials) for b in budgets} == budgets
    assert len({(r["config_key"], r["max_epochs"]) for r in trials}) == len(trials)
    epochs = results(study, "epochs.parquet")
    for r in trials:
        assert [e["epoch"] for e in epochs if e["trial_key"] == r["trial_key"]] == \
            list(range(1, r["epochs_run"] + 1)), r["trial_key"]
    test_ll = results(study, "test_ll.parquet")
    done = [r for r in trials if r["state"] == "COMPLETED"]
    assert len(test_ll) == n_test * len(done)
    assert len({(r["trial_key"], r["image"]) for r in test_ll}) == len(test_ll)
    return trials


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_real_grid_grows_to_4_epochs_exactly(local_ray, tmp_path, capsys):
    """Two real digits trials at 2 epochs, extended to 4: both budgets once each (trials,
    epochs, test images), once COMPLETE in Optuna per key; the continued MixM trial's epochs
    3-4 and IS LL are a 4-epoch run's from scratch; status and report read both budgets."""
    import polars as pl
    import torch

    from analysis.load import load
    from models.config import TrialConfig
    from models.trial import run_trial

    path = write_study(tmp_path, "real", search={"grid": {"Ms": [1], "Ks": [10]}},
                       budget={"max_epochs": 2, "patience": 5})
    runner.run_study(load_spec(str(path)))
    study = tmp_path / "real"
    start = time.monotonic()
    assert cli.main(["extend", str(study), "--max-epochs", "4", "--quiet"]) == 0
    print(f"extend of 2 real digits trials from 2 to 4 epochs: "
          f"{time.monotonic() - start:.1f} s")
    out = capsys.readouterr().out
    assert "2 continue from their last checkpoint, 0 keep their result, 0 new" in out, out
    assert "4 trial(s) recorded (4 COMPLETED)" in out, out
    assert not (study / extend.REQUEST_FILE).exists()

    trials = check_budgets_once(study, {2: 2, 4: 2}, n_test=trials_n_test(study))
    by_key = {r["trial_key"]: r for r in trials}
    assert optuna_by_state(study) == {"COMPLETE": sorted(by_key)}
    longer = [r for r in trials if r["max_epochs"] == 4]
    assert all(by_key[r["continued_from"]]["max_epochs"] == 2 for r in longer)
    assert all(r["config_key"] == by_key[r["continued_from"]]["config_key"] for r in longer)

    # the continued MixM trial against the same configuration run for 4 epochs from scratch
    mix = next(r for r in longer if r["prior"] != "standard")
    torch.set_num_threads(1)  # the study's trials ran with cpus_per_trial = 1 thread
    metrics = run_trial(TrialConfig.from_flat(store.record_config(mix)), tmp_path / "scratch",
                        progress=False)
    scratch = pl.read_parquet(tmp_path / "scratch" / "epochs.parquet").drop("seconds")
    continued = (pl.DataFrame([e for e in results(study, "epochs.parquet")
                               if e["trial_key"] == mix["trial_key"]])
                 .select(scratch.columns))
    assert continued.filter(pl.col("epoch") > 2).equals(scratch.filter(pl.col("epoch") > 2))
    assert mix["test_ll"] == pytest.approx(metrics["test_ll"], abs=1e-6)

    assert cli.main(["status", str(study)]) == 0
    status = capsys.readouterr().out
    assert "trials     4 planned: 4 COMPLETED" in status, status
    assert "budgets    2 epochs: 2 trials; 4 epochs: 2 trials (2 continued)" in status, status
    assert cli.main(["report", str(study), "--out", str(tmp_path / "rep"), "--only",
                     "budget_curves"]) == 0
    table = (tmp_path / "rep" / "tables" / "budget_curves.csv").read_text()
    assert len(table.splitlines()) == 1 + 2 * 2, table  # 2 models x 2 budgets
    frames = load([study])
    assert sorted(frames.trials["continued_from"].drop_nulls()) == \
        sorted(r["continued_from"] for r in longer)


def trials_n_test(study: Path) -> int:
    return results(study, "trials.parquet")[0]["n_test"]


@pytest.fixture(scope="module")
def finished(local_ray, tmp_path_factory) -> Path:
    """A finished fake grid at 2 epochs (7 trials); the refusal tests leave it as it is."""
    root = tmp_path_factory.mktemp("finished")
    path = write_study(root, "done", fake={"FAKE_EPOCH_SECONDS": 0.01},
                       budget={"max_epochs": 2, "patience": 5})
    runner.run_study(load_spec(str(path)), trial_function=fake_trials.fake_trial)
    return root / "done"


@pytest.fixture(scope="module")
def open_search(local_ray, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("open")
    path = write_study(root, "open", fake={"FAKE_EPOCH_SECONDS": 0.01},
                       search={"space": "quickstart_open", "num_samples": 2,
                               "sampler": "random", "sampler_seed": 0},
                       budget={"max_epochs": 2, "patience": 5})
    runner.run_study(load_spec(str(path)), trial_function=fake_trials.fake_trial)
    return root / "open"


def refused(args: list[str], folder: Path, capsys) -> str:
    """``extend`` with ``args`` exits 2 with one line and changes nothing in ``folder``."""
    before = snapshot(folder)
    assert cli.main(["extend", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gmmpvae extend: error: "), err
    assert snapshot(folder) == before
    return err[0]


@pytest.mark.parametrize("flags, expected", [
    ([], "extend needs --max-epochs N and/or --seeds S"),
    (["--max-epochs", "1"], "--max-epochs 1 is smaller than the study's largest budget, 2"),
    (["--seeds", "0"], "--seeds 0 is invalid"),
])
def test_what_cannot_be_done_is_refused_in_one_line(finished, capsys, flags, expected):
    assert expected in refused([str(finished), *flags], finished, capsys)


def test_seeds_of_an_open_search_are_refused(open_search, capsys):
    line = refused([str(open_search), "--seeds", "2"], open_search, capsys)
    assert "search is open" in line and "--max-epochs only" in line


def test_a_trial_without_its_checkpoint_is_named(finished, capsys):
    key = sorted(p.parent.name for p in (finished / "trials").glob("*/trial.json"))[3]
    checkpoint = finished / "trials" / key / "checkpoint" / "checkpoint.pt"
    aside = checkpoint.with_suffix(".aside")
    checkpoint.rename(aside)
    try:
        line = refused([str(finished), "--max-epochs", "4"], finished, capsys)
    finally:
        aside.rename(checkpoint)
    assert f"trial {key} has no checkpoint left" in line and "cannot continue to 4" in line


def test_a_held_study_and_an_extension_under_way_are_refused(finished, capsys):
    spec, _ = load_study(str(finished))
    with runner.locked(spec, new=False):
        line = refused([str(finished), "--max-epochs", "4"], finished, capsys)
    assert "driver" in line or "lock" in line, line
    request = finished / extend.REQUEST_FILE
    request.write_text(json.dumps({"max_epochs": 3, "seeds": None}))
    try:
        line = refused([str(finished), "--max-epochs", "4"], finished, capsys)
    finally:
        request.unlink()
    assert "is under way" in line and "gmmpvae resume" in line


def test_carried_trials_and_new_seeds(local_ray, tmp_path, capsys):
    """A trial that errored keeps its result at 4 epochs (said so; FAIL in Optuna once per
    budget); ``--seeds 2`` runs seed 1 at 2 epochs from scratch (its M=2, K=10 trial errors
    too), then continues the others to 4."""
    path = write_study(tmp_path, "grow", fake={"FAKE_EPOCH_SECONDS": 0.01,
                                               "FAKE_NAN_MATCH": "m2-k10"},
                       budget={"max_epochs": 2, "patience": 5})
    runner.run_study(load_spec(str(path)), trial_function=fake_trials.fake_trial)
    study = tmp_path / "grow"
    assert cli.main(["extend", str(study), "--max-epochs", "4", "--seeds", "2",
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "next: max_epochs=2: 0 continue from their last checkpoint, 0 keep their result, " \
           "7 new from scratch" in out, out
    assert "next: max_epochs=4: 12 continue from their last checkpoint, 2 keep their " \
           "result, 0 new from scratch" in out, out
    assert "errored at epoch 1 of 2" in out, out
    trials = check_budgets_once(study, {2: 14, 4: 14}, n_test=5)
    carried = [r for r in trials if r["carried_from"]]
    assert len(carried) == 2 and {r["state"] for r in carried} == {"ERROR"}
    assert {r["max_epochs"] for r in carried} == {4} and {r["M"] for r in carried} == {2}
    states = optuna_by_state(study)
    assert states["FAIL"] == sorted(r["trial_key"] for r in trials if r["state"] == "ERROR")
    assert states["COMPLETE"] == sorted(r["trial_key"] for r in trials
                                        if r["state"] == "COMPLETED")
    assert not (study / extend.REQUEST_FILE).exists()
    assert cli.main(["extend", str(study), "--max-epochs", "4", "--seeds", "2"]) == 0
    assert "nothing left to run" in capsys.readouterr().out


def test_a_step_of_carried_trials_only_runs_none(local_ray, tmp_path, capsys):
    """Every trial errored at 2 epochs: at 4 each keeps its result (carried, FAIL in the step's
    Optuna study), and no trial runs."""
    path = write_study(tmp_path, "nan", fake={"FAKE_EPOCH_SECONDS": 0.01,
                                              "FAKE_NAN_MATCH": "-s0"},
                       budget={"max_epochs": 2, "patience": 5})
    runner.run_study(load_spec(str(path)), trial_function=fake_trials.fake_trial)
    study = tmp_path / "nan"
    assert cli.main(["extend", str(study), "--max-epochs", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "0 continue from their last checkpoint, 7 keep their result, 0 new" in out, out
    assert "COMPLETED" not in out and "14 trial(s) recorded (14 ERROR)" in out, out
    trials = check_budgets_once(study, {2: 7, 4: 7}, n_test=5)
    assert sum(bool(r["carried_from"]) for r in trials) == 7
    assert optuna_by_state(study) == {"FAIL": sorted(r["trial_key"] for r in trials)}
    assert len(list((study / "trials").glob("*/executed.log"))) == 7  # the 2-epoch runs only


def test_an_open_search_grows_to_more_epochs(open_search, capsys):
    """An open search's drawn trials continue like a grid's (their step's own Optuna study
    enqueues them by key); runs last on the module's open search (it changes it)."""
    assert cli.main(["extend", str(open_search), "--max-epochs", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "next: max_epochs=3: 2 continue from their last checkpoint" in out, out
    trials = check_budgets_once(open_search, {2: 2, 3: 2}, n_test=5)
    assert optuna_by_state(open_search) == {"COMPLETE": sorted(r["trial_key"] for r in trials)}
    assert cli.main(["status", str(open_search)]) == 0
    assert "trials     4 planned: 4 COMPLETED" in capsys.readouterr().out


def cli_process(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_a_killed_extend_is_finished_by_resume(local_ray, tmp_path, capsys):
    """SIGKILL ``extend`` (its driver's process group) once two 4-epoch trials are recorded;
    ``gmmpvae resume`` finishes the extension: every (configuration, budget) once in Parquet
    and once COMPLETE in Optuna, nothing RUNNING, the request removed."""
    path = write_study(tmp_path, "killed", fake={"FAKE_EPOCH_SECONDS": 0.01},
                       budget={"max_epochs": 2, "patience": 5})
    runner.run_study(load_spec(str(path)), trial_function=fake_trials.fake_trial)
    study = tmp_path / "killed"
    (study / "fake.json").write_text(json.dumps({"FAKE_EPOCH_SECONDS": 0.25}))
    env = {**os.environ, provenance.ENV_TRIAL_FUNCTION: "fake_trials:fake_trial"}
    driver = cli_process(["extend", str(study), "--max-epochs", "4", "--quiet"], env)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            if len(list((study / "trials").glob("*/trial.json"))) >= 7 + 2:
                break
            time.sleep(0.1)
    finally:
        kill_group(driver)
    output = driver.stdout.read()
    done = len(list((study / "trials").glob("*/trial.json")))
    assert 7 + 2 <= done < 14, output
    assert (study / extend.REQUEST_FILE).is_file()

    capsys.readouterr()
    assert cli.main(["resume", str(study), "--quiet"]) == 0  # in this process, on its local Ray
    output = capsys.readouterr().out
    assert "resuming from" in output or "continuing" in output, output  # the step in flight
    trials = check_budgets_once(study, {2: 7, 4: 7}, n_test=5)
    assert optuna_by_state(study) == {"COMPLETE": sorted(r["trial_key"] for r in trials)}
    assert not (study / extend.REQUEST_FILE).exists()
    for r in trials:
        if r["max_epochs"] == 4:  # continued: epochs 3-4 trained here, never 1-2
            log = (study / "trials" / r["trial_key"] / "executed.log").read_text().split()
            assert sorted({int(e) for e in log[::2]}) == [3, 4], r["trial_key"]


def crashed_in_a_step(tmp_path: Path, name: str) -> tuple[Path, str]:
    """A 1-epoch grid grown to 3 epochs whose continued m1-k10 trial crashes at epoch 2 (no
    retries: ERROR at 3 epochs; the crash happens once); the study and that trial's key."""
    crash = tmp_path / f"{name}-crash"
    crash.mkdir()
    path = write_study(tmp_path, name, fake={"FAKE_EPOCH_SECONDS": 0.01,
                                             "FAKE_CRASH_MATCH": "m1-k10",
                                             "FAKE_CRASH_DIR": str(crash)},
                       budget={"max_epochs": 1, "patience": 5}, failure={"retries": 0})
    runner.run_study(load_spec(str(path)), trial_function=fake_trials.fake_trial)
    study = tmp_path / name
    assert cli.main(["extend", str(study), "--max-epochs", "3", "--quiet"]) == 0
    errored = [r for r in results(study, "trials.parquet") if r["state"] == "ERROR"]
    assert [r["max_epochs"] for r in errored] == [3] and errored[0]["continued_from"]
    return study, errored[0]["trial_key"]


def check_rerun(study: Path, key: str) -> None:
    """Every trial COMPLETED at both budgets; ``key`` ran again from its source's checkpoint
    (epochs 2-3, never 1) and is told COMPLETE in its step's Optuna study beside its FAIL."""
    trials = check_budgets_once(study, {1: 7, 3: 7}, n_test=5)
    assert {r["state"] for r in trials} == {"COMPLETED"}
    log = (study / "trials" / key / "executed.log").read_text().split()
    assert [int(e) for e in log[::2]] == [2, 2, 3]  # crashed at 2; then 2-3 again
    by_state = optuna_by_state(study)
    assert by_state["FAIL"] == [key] and by_state["COMPLETE"].count(key) == 1


def test_rerun_errored_runs_the_last_steps_errored_trial_again(local_ray, tmp_path, capsys):
    """`resume --rerun-errored` after an extension: the step's errored trial runs again
    (Tune's restored experiment of the step) and its step's Optuna study is told."""
    study, key = crashed_in_a_step(tmp_path, "rerun")
    capsys.readouterr()
    assert cli.main(["resume", str(study), "--rerun-errored", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "trial(s) recorded (14 COMPLETED)" in out, out
    check_rerun(study, key)


def test_rerun_errored_reaches_the_step_in_flight(local_ray, tmp_path, capsys):
    """An extension under way (its request there, a step trial's record lost): `resume
    --rerun-errored` finishes the step and runs its errored trial again (it used to be
    ignored by an extension's resume)."""
    study, key = crashed_in_a_step(tmp_path, "flight")
    lost = next(r["trial_key"] for r in results(study, "trials.parquet")
                if r["max_epochs"] == 3 and r["state"] == "COMPLETED")
    (study / "trials" / lost / "trial.json").unlink()
    (study / extend.REQUEST_FILE).write_text(json.dumps({"max_epochs": 3, "seeds": None}))
    capsys.readouterr()
    assert cli.main(["resume", str(study), "--rerun-errored", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"re-running 1 finished trial(s) whose records were lost: {lost}" in out, out
    assert f"running 1 errored trial(s) again: {key}" in out, out
    assert not (study / extend.REQUEST_FILE).exists()
    check_rerun(study, key)


def test_rerun_errored_leaves_an_error_a_larger_budget_carries(local_ray, tmp_path, capsys):
    """Errored at 2 epochs, carried to 4: `resume --rerun-errored` names it and runs
    nothing (run again, its 4-epoch row would repeat a result it no longer has)."""
    crash = tmp_path / "crash"
    crash.mkdir()
    path = write_study(tmp_path, "left", fake={"FAKE_EPOCH_SECONDS": 0.01,
                                               "FAKE_CRASH_MATCH": "m1-k10",
                                               "FAKE_CRASH_DIR": str(crash)},
                       budget={"max_epochs": 2, "patience": 5}, failure={"retries": 0})
    runner.run_study(load_spec(str(path)), trial_function=fake_trials.fake_trial)
    study = tmp_path / "left"
    assert cli.main(["extend", str(study), "--max-epochs", "4", "--quiet"]) == 0
    source = next(r["trial_key"] for r in results(study, "trials.parquet")
                  if r["state"] == "ERROR" and not r["carried_from"])
    before = snapshot(study / "trials")
    capsys.readouterr()
    assert cli.main(["resume", str(study), "--rerun-errored", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (f"--rerun-errored leaves 1 errored trial(s) whose result a larger budget carries "
            f"(re-run, its carried rows would be stale): {source}") in out, out
    assert "nothing to run" in out, out
    assert snapshot(study / "trials") == before
