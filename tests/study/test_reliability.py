"""Issue 11, the fast cases (no Ray): a second driver refused, validation before anything starts
(data, sizes, names and paths, an unreachable cluster), torn files repaired or named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from study import cli, store
from study.errors import UsageError
from study.recovery import repair
from study.spec import load_spec
from study.store import lock
from study.tune.session import join_error

HERE = Path(__file__).resolve().parent

from test_runner import write_study  # noqa: E402


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------ the lock

def test_a_second_driver_is_refused_in_one_line_and_touches_nothing(tmp_path, capsys):
    path = write_study(tmp_path, "locked")
    study = tmp_path / "locked"
    with lock.study_lock(pafs.LocalFileSystem(), str(study), str(study)):
        assert cli.main(["run", str(path)]) == 2
        err = one_line_error(capsys)
        assert "already being run by pid" in err and str(os.getpid()) in err
        assert not (study / "study.json").exists()
        # resume of a study whose driver is alive: refused the same way
        spec = load_spec(str(path))
        store.write_json(pafs.LocalFileSystem(), str(study / "study.json"),
                           {"spec": spec.to_dict(), "git_rev": "x"})
        before = (study / "study.json").read_bytes()
        assert cli.main(["resume", str(study)]) == 2
        assert "already being run by pid" in one_line_error(capsys)
        assert (study / "study.json").read_bytes() == before
        # status stays read-only and names the driver
        assert cli.main(["status", str(study), "--no-consolidate"]) == 0
        assert f"pid {os.getpid()}" in capsys.readouterr().out


def test_a_study_started_meanwhile_is_refused_under_the_lock(tmp_path, capsys):
    """The race: the second driver passed validation before the first wrote study.json."""
    from study.spec import checks

    path = write_study(tmp_path, "race")
    spec = load_spec(str(path))
    checks.validate(spec, new=True)  # passes: no study yet
    store.write_json(pafs.LocalFileSystem(), str(tmp_path / "race" / "study.json"),
                       {"spec": spec.to_dict()})  # the first driver, meanwhile
    from study import run as runner

    with pytest.raises(UsageError, match="already holds a study"):
        with runner._locked(spec, new=True):
            checks.check_new(spec)  # what run_study does first under the lock
            pytest.fail("ran")


# ------------------------------------------------------------------------------ validation

def test_a_missing_dataset_is_one_line(tmp_path, capsys):
    path = write_study(tmp_path, "nodata", data={"dataset": "mnist",
                                                 "data_dir": str(tmp_path / "empty")})
    assert cli.main(["run", str(path)]) == 2
    assert "data.dataset='mnist' is not in the data folder" in one_line_error(capsys)
    assert not (tmp_path / "nodata").exists()


def test_a_model_that_cannot_fit_is_refused_before_anything_starts(tmp_path, capsys):
    path = write_study(tmp_path, "huge", search={"grid": {"Ks": [10**9]}})
    assert cli.main(["run", str(path), "--dry-run"]) == 2
    assert "needs at least" in one_line_error(capsys)
    assert cli.main(["train", "--dataset", "digits", "--K", str(10**9),
                     "--out", str(tmp_path / "t")]) == 2
    assert "needs at least" in one_line_error(capsys)
    assert not (tmp_path / "t").exists()


def test_names_and_paths_too_long_are_one_line(tmp_path, capsys):
    path = write_study(tmp_path, "names")
    assert cli.main(["run", str(path), "--name", "a" * 300]) == 2
    assert "at most 200 characters" in one_line_error(capsys)
    deep = tmp_path / "/".join(["b" * 250] * 17)
    assert cli.main(["run", str(path), "--storage", str(deep)]) == 2
    assert "this file system allows" in one_line_error(capsys)
    assert cli.main(["run", str(path), "--storage", str(tmp_path / ("c" * 300))]) == 2
    assert "300 bytes" in one_line_error(capsys)


def test_an_unreachable_cluster_is_one_line(tmp_path, capsys):
    path = write_study(tmp_path, "away")
    assert cli.main(["run", str(path), "--address", "127.0.0.1:1",
                     "--connect-timeout", "5"]) == 2
    err = one_line_error(capsys)
    assert "no Ray cluster answers there within 5 s" in err
    assert not (tmp_path / "away").exists()


def test_an_authentication_refusal_names_the_token():
    line = join_error("127.0.0.1:6379", RuntimeError("InvalidAuthToken: UNAUTHENTICATED"))
    assert "RAY_AUTH_MODE=token" in line and "RAY_AUTH_TOKEN" in line
    assert "cannot join" in join_error("h:1", ConnectionError("timed out"))


# ------------------------------------------------------------------------------ torn files

def fake_study(tmp_path: Path, name: str = "torn") -> tuple[Path, object, list[str]]:
    """A study folder with every planned trial COMPLETED (records and files, no Ray)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = write_study(tmp_path, name)
    spec = load_spec(str(path))
    study = tmp_path / name
    fs = pafs.LocalFileSystem()
    store.write_json(fs, str(study / "study.json"), {"spec": spec.to_dict()})
    keys = []
    for config in spec.plan():
        key = config["trial_key"]
        keys.append(key)
        folder = str(study / "trials" / key)
        rows = [{"epoch": e, "beta": 1.0, "train_loss": 5.0 / e, "train_re": 4.0,
                 "train_kl": 1.0, "val_loss": 5.0 / e, "val_re": 4.0, "val_kl": 1.0,
                 "seconds": 0.1} for e in (1, 2)]
        store.write_epochs(fs, folder, rows)
        pq.write_table(pa.table({"image": [0, 1], "log_likelihood": [-3.0, -3.0],
                                 "elbo_bound": [-4.0, -4.0], "elbo_mc": [-3.5, -3.5],
                                 "re": [2.0, 2.0], "kl_bound": [1.0, 1.0],
                                 "kl_mc": [0.9, 0.9]}), f"{folder}/test_ll.parquet")
        Path(folder, "metrics.json").write_text(json.dumps({"test_ll": -3.0}))
        store.write_record(fs, folder, store.make_record(
            study=name, trial_key=key, state=store.COMPLETED, config=config, epochs=rows,
            metrics={"test_ll": -3.0}))
    return study, spec, keys


def test_a_truncated_trial_file_is_named_not_blocking(tmp_path, capsys):
    study, spec, keys = fake_study(tmp_path)
    epochs = study / "trials" / keys[0] / "epochs.parquet"
    epochs.write_bytes(epochs.read_bytes()[:40])
    record = study / "trials" / keys[1] / "trial.json"
    record.write_text(record.read_text()[:30])
    assert cli.main(["status", str(study)]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 2 and "epochs.parquet" in warnings[0] + warnings[1]
    assert f"{len(keys) - 2} COMPLETED" in captured.out
    consolidated = store.consolidate(str(study), spec.name)
    assert set(consolidated.damaged) == {keys[0], keys[1]}
    assert consolidated.trials == len(keys) - 2

    repairs = repair.repair_study(spec)  # what resume does first
    assert sorted(repairs.set_aside) == sorted(keys[:2]) and len(repairs.lines) == 2
    for key in keys[:2]:
        folder = study / "trials" / key
        assert not (folder / "trial.json").exists() and not (folder / "metrics.json").exists()
        assert list(folder.glob("*.set-aside-*"))
    assert not store.consolidate(str(study), spec.name).damaged


def test_a_truncated_study_file_is_named(tmp_path, capsys):
    study, _, _ = fake_study(tmp_path)
    (study / "study.json").write_text((study / "study.json").read_text()[:50])
    assert cli.main(["status", str(study)]) == 2
    err = one_line_error(capsys)
    assert f"{study / 'study.json'} is damaged" in err


def test_a_torn_journal_line_is_cut_and_reconciled_with_the_records(tmp_path, capsys):
    """Optuna says RUNNING for a trial whose end was on the torn line; the record says
    COMPLETED: resume cuts the line and tells Optuna; status names it without changing it."""
    from optuna.trial import TrialState

    from study import optuna_study

    study, spec, keys = fake_study(tmp_path)
    ostudy = optuna_study.open_study(spec)
    for key in keys:
        trial = ostudy.ask()
        trial.set_user_attr("trial_key", key)
        if key != keys[-1]:
            ostudy.tell(trial, 1.0)
    journal = Path(spec.optuna_storage_url)
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code": 6, "worker_id": "x", "trial_id": 3, "sta')
    assert cli.main(["status", str(study), "--no-consolidate"]) == 0
    assert "torn by a crash" in capsys.readouterr().err
    assert journal.read_bytes().endswith(b'"sta')  # status changed nothing

    assert "cut off its last line" in repair.repair_study(spec).lines[0]
    assert journal.read_bytes() == whole
    records = store.read_records(pafs.LocalFileSystem(), str(study))
    repair.reconcile_optuna(spec, records, lambda r: 2.5)
    states = [t.state for t in optuna_study.existing_study(spec).get_trials()]
    assert states.count(TrialState.COMPLETE) == len(keys) and TrialState.RUNNING not in states


def test_garbage_in_the_journal_is_named(tmp_path, capsys):
    study, spec, _ = fake_study(tmp_path)
    from study import optuna_study

    optuna_study.open_study(spec)
    journal = Path(spec.optuna_storage_url)
    journal.write_bytes(b"\xff\xfe garbage\n" + journal.read_bytes())
    assert cli.main(["resume", str(study)]) == 2
    err = one_line_error(capsys)
    assert str(journal) in err and "line 1" in err


def test_a_deleted_record_of_a_finished_trial_is_found_for_re_running(tmp_path):
    from study import optuna_study

    study, spec, keys = fake_study(tmp_path)
    ostudy = optuna_study.open_study(spec)
    for key in keys:
        trial = ostudy.ask()
        trial.set_user_attr("trial_key", key)
        ostudy.tell(trial, 1.0)
    (study / "trials" / keys[2] / "trial.json").unlink()
    records = store.read_records(pafs.LocalFileSystem(), str(study))
    missing = repair.reconcile_optuna(spec, records, lambda r: 1.0)
    assert missing == {keys[2]: 2}


def test_a_zero_byte_checkpoint_is_not_resumed_from(tmp_path):
    from study.tune import trainable

    folder = tmp_path / "trial" / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"")
    (folder / "meta.json").write_text(json.dumps({"attempts": 1, "epochs": []}))
    assert not trainable.intact(folder)
    meta, resumed = trainable._restore(None, tmp_path / "trial", allow_local=True)
    assert not resumed and meta["attempts"] == 1 and not folder.exists()
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"x")
    (folder / "meta.json").write_text(json.dumps({"attempts": 1, "epochs": []}))
    assert trainable._restore(None, tmp_path / "trial", allow_local=True)[1]
