"""Studies run in-process on one shared local Ray (2 CPUs): the real trainer on digits, and
the fast stand-in `fake_trials.fake_trial` for failures, ASHA, open searches and concurrency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

import fake_trials  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from study import optuna_study, store, summary  # noqa: E402
from study import run as runner  # noqa: E402
from study.spec import load_spec  # noqa: E402

pytestmark = pytest.mark.slow

TINY_BUDGET = {"max_epochs": 3, "warmup_epochs": 1, "patience": 3, "is_samples": 10,
               "max_train_examples": 200, "max_test_examples": 50}


def toml_text(sections: dict[str, dict]) -> str:
    """A study file from nested dicts (strings, numbers, booleans, lists, one level of
    sub-tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = []
    for name, table in sections.items():
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
        for sub, subtable in subs.items():
            lines.append(f"[{name}.{sub}]")
            lines += [f"{k} = {value(v)}" for k, v in subtable.items()]
        lines.append("")
    return "\n".join(lines)


def write_study(tmp_path: Path, name: str, fake: dict | None = None, **sections: dict) -> Path:
    base = {"study": {"name": name, "storage": str(tmp_path / name)},
            "data": {"dataset": "digits"},
            "search": {"space": "quickstart", "seeds": 1},
            "model": {"latent_dim": 4, "hidden_dim": 16},
            "budget": dict(TINY_BUDGET),
            "resources": {"cpus_per_trial": 1}}
    for key, table in sections.items():
        base[key] = {**base.get(key, {}), **table}
    path = tmp_path / f"{name}.toml"
    path.write_text(toml_text(base))
    if fake:  # settings of fake_trials (Ray's workers do not see this process's environment)
        (tmp_path / name).mkdir()
        (tmp_path / name / "fake.json").write_text(json.dumps(fake))
    return path


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs, loopback) for every study of this module."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield
    ray.shutdown()


def optuna_trials(spec):
    import optuna

    study = optuna.load_study(study_name=spec.name, storage=optuna_study.open_storage(spec))
    return study.get_trials(deepcopy=False)


def read(study_dir: Path, name: str):
    return pq.read_table(study_dir / "results" / name)


def test_local_study_of_real_trials_writes_the_three_files(local_ray, tmp_path):
    """≥ 6 tiny trials of the real trainer: one row per trial, the documented schemas."""
    spec = load_spec(str(write_study(tmp_path, "real")))
    outcome = runner.run_study(spec)
    study = tmp_path / "real"
    planned = sorted(t["trial_key"] for t in spec.plan())
    assert len(planned) >= 6

    trials = read(study, "trials.parquet")
    assert trials.schema.equals(store.TRIALS_SCHEMA, check_metadata=False)
    assert sorted(trials["trial_key"].to_pylist()) == planned
    assert set(trials["state"].to_pylist()) == {"COMPLETED"}
    rows = trials.to_pylist()
    for row in rows:
        assert row["study"] == "real" and row["schema_version"] == store.SCHEMA_VERSION
        assert row["test_kl_lse"] <= row["test_kl"] + 1e-6  # U_lse ≤ U, reported beside it
        mixture = row["prior"] == "pseudo_mixture"
        assert (row["spread_ratio"] is not None) == mixture == (row["collapsed"] is not None)
        assert row["epochs_run"] == 3 and row["is_samples"] == 10
        assert row["image_shape"] == [8, 8] and abs(sum(row["pi"]) - 1) < 1e-9
        assert row["test_ll"] < 0 and row["test_elbo_bound"] <= row["test_ll"] + 1e-6
        assert row["started_at"] < row["ended_at"] and row["trial_dir"].endswith(row["trial_key"])
        assert set(json.loads(row["versions"])) >= {"torch", "ray", "optuna", "python"}
        assert row["device"] == "cpu" and row["device_requested"] == "auto"
        assert row["node"].endswith("/127.0.0.1")

    epochs = read(study, "epochs.parquet")
    assert epochs.schema.equals(store.EPOCHS_SCHEMA, check_metadata=False)
    assert epochs.num_rows == 3 * len(planned)
    pairs = zip(epochs["trial_key"].to_pylist(), epochs["epoch"].to_pylist(), strict=True)
    assert sorted(pairs) == sorted((k, e) for k in planned for e in (1, 2, 3))

    test_ll = read(study, "test_ll.parquet")
    assert test_ll.schema.equals(store.TEST_LL_SCHEMA, check_metadata=False)
    assert test_ll.num_rows == 50 * len(planned)

    complete = [t.user_attrs["trial_key"] for t in optuna_trials(spec)
                if t.state.name == "COMPLETE"]
    assert sorted(complete) == planned
    assert outcome.consolidated.trials == len(planned)
    assert outcome.observed_concurrency == 2  # 2 CPUs, 1 CPU per trial
    # consolidation is idempotent: a second pass writes the same files
    before = [read(study, n) for n in ("trials.parquet", "epochs.parquet", "test_ll.parquet")]
    store.consolidate(str(study), "real")
    after = [read(study, n) for n in ("trials.parquet", "epochs.parquet", "test_ll.parquet")]
    assert all(a.equals(b) for a, b in zip(before, after, strict=True))


def test_trials_run_concurrently_on_two_cpus(local_ray, tmp_path):
    """2 CPUs, 1 CPU per trial: trials overlap in time (recorded started_at / ended_at)."""
    spec = load_spec(str(write_study(tmp_path, "overlap", fake={"FAKE_EPOCH_SECONDS": 0.3},
                                     budget={"max_epochs": 4})))
    outcome = runner.run_study(spec, trial_function=fake_trials.fake_trial)
    records = outcome.consolidated.records
    assert len(records) == len(spec.plan())
    intervals = summary.record_intervals(records)
    assert summary.max_overlap(intervals) == 2
    # every trial overlapped another one for most of its life
    busy = sum((end - start).total_seconds() for start, end in intervals)
    first = min(s for s, _ in intervals)
    last = max(e for _, e in intervals)
    assert busy / (last - first).total_seconds() > 1.5


def test_nan_is_recorded_as_error_and_a_crash_is_retried(local_ray, tmp_path):
    fake = {"FAKE_NAN_MATCH": "m2-k10", "FAKE_CRASH_MATCH": "m3-k50",
            "FAKE_CRASH_DIR": str(tmp_path)}
    spec = load_spec(str(write_study(tmp_path, "fail", fake=fake, budget={"max_epochs": 4},
                                     failure={"retries": 1})))
    runner.run_study(spec, trial_function=fake_trials.fake_trial)
    rows = {r["trial_key"]: r for r in read(tmp_path / "fail", "trials.parquet").to_pylist()}
    assert len(rows) == len(spec.plan())
    nan = [r for k, r in rows.items() if "-m2-k10-" in k]
    crashed = [r for k, r in rows.items() if "-m3-k50-" in k]
    assert [r["state"] for r in nan] == ["ERROR"]
    assert "non-finite loss" in nan[0]["error"] and nan[0]["attempts"] == 1  # not retried
    assert nan[0]["epochs_run"] == 1 and nan[0]["test_ll"] is None
    assert [r["state"] for r in crashed] == ["COMPLETED"]
    assert crashed[0]["attempts"] == 2 and crashed[0]["error"] is None  # resumed, then done
    log = (tmp_path / "fail" / "trials" / crashed[0]["trial_key"] / "executed.log").read_text()
    assert [int(line.split()[0]) for line in log.splitlines()] == [1, 2, 2, 3, 4]
    others = [r for k, r in rows.items() if r not in nan + crashed]
    assert {r["state"] for r in others} == {"COMPLETED"}
    states = {t.user_attrs["trial_key"]: t.state.name for t in optuna_trials(spec)}
    assert states[nan[0]["trial_key"]] == "FAIL"
    assert states[crashed[0]["trial_key"]] == "COMPLETE"


def test_asha_prunes_and_pruned_trials_keep_their_epochs(local_ray, tmp_path):
    spec = load_spec(str(write_study(
        tmp_path, "asha", fake={"FAKE_EPOCH_SECONDS": 0.1},
        budget={"max_epochs": 8, "patience": 8},
        scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        search={"seeds": 2})))
    runner.run_study(spec, trial_function=fake_trials.fake_trial)
    rows = read(tmp_path / "asha", "trials.parquet").to_pylist()
    assert len(rows) == len(spec.plan()) == 14
    states = [r["state"] for r in rows]
    assert states.count("PRUNED") >= 1 and states.count("COMPLETED") >= 1
    epochs = read(tmp_path / "asha", "epochs.parquet").to_pylist()
    for r in rows:
        got = [e["epoch"] for e in epochs if e["trial_key"] == r["trial_key"]]
        assert got == list(range(1, r["epochs_run"] + 1))
        if r["state"] == "PRUNED":
            assert r["epochs_run"] < 8 and r["test_ll"] is None
        else:
            assert r["epochs_run"] == 8 and r["test_ll"] is not None
    optuna_states = {t.user_attrs["trial_key"]: t.state.name for t in optuna_trials(spec)}
    assert {k: ("PRUNED" if s == "PRUNED" else "COMPLETE") for k, s in
            ((r["trial_key"], r["state"]) for r in rows)} == optuna_states


def test_open_search_samples_distinct_trials(local_ray, tmp_path):
    spec = load_spec(str(write_study(
        tmp_path, "open", search={"space": "quickstart_open", "num_samples": 5,
                                  "sampler": "tpe", "sampler_seed": 1})))
    runner.run_study(spec, trial_function=fake_trials.fake_trial)
    rows = read(tmp_path / "open", "trials.parquet").to_pylist()
    assert len(rows) == 5 and len({r["trial_key"] for r in rows}) == 5
    complete = [t for t in optuna_trials(spec) if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["trial_key"] for t in complete) == \
        sorted(r["trial_key"] for r in rows)
    for t in complete:  # Optuna's value is the study metric of the trial's final result
        row = next(r for r in rows if r["trial_key"] == t.user_attrs["trial_key"])
        assert t.value == pytest.approx(fake_trials.last_val_loss(row))


def test_status_lists_trials_by_state(local_ray, tmp_path, capsys):
    from study import cli

    spec = load_spec(str(write_study(tmp_path, "stat", budget={"max_epochs": 2})))
    runner.run_study(spec, trial_function=fake_trials.fake_trial)
    capsys.readouterr()
    assert cli.main(["status", str(tmp_path / "stat")]) == 0
    out = capsys.readouterr().out
    assert f"{len(spec.plan())} COMPLETED" in out
    assert "best by best_val_loss:" in out and "best by test_ll:" in out
    for t in spec.plan():
        assert t["trial_key"] in out
    assert "COLLAPSED" not in out and "collapsed " not in out  # no diagnostics: no flag
    # a record whose diagnostics meet the collapse rule (models.collapse_rule) is marked and
    # counted, whatever flag an older rule stored
    key = next(t["trial_key"] for t in spec.plan() if t["prior"] == "pseudo_mixture")
    record_path = tmp_path / "stat" / "trials" / key / "trial.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "collapsed": False, "spread_ratio": 0.001,
                                       "resp_perplexity": 0.99, "best_epoch": 2,
                                       "warmup_epochs": 1}))
    assert cli.main(["status", str(tmp_path / "stat")]) == 0
    out = capsys.readouterr().out
    assert f"{key}" in out and "COLLAPSED" in out
    assert "collapsed  1 of 1 pseudo-mixture trials have a collapsed prior" in out


def test_resume_reruns_errored_trials_on_request(local_ray, tmp_path):
    """A crash with no retries left is ERROR; `resume --rerun-errored` restarts it; Optuna
    then holds it once among its COMPLETE trials (beside the earlier failure)."""
    fake = {"FAKE_CRASH_MATCH": "m1-k10", "FAKE_CRASH_DIR": str(tmp_path)}
    spec = load_spec(str(write_study(tmp_path, "rerun", fake=fake, budget={"max_epochs": 3},
                                     failure={"retries": 0})))
    runner.run_study(spec, trial_function=fake_trials.fake_trial)
    study = tmp_path / "rerun"
    states = {r["trial_key"]: r["state"] for r in read(study, "trials.parquet").to_pylist()}
    crashed = [k for k in states if "-m1-k10-" in k]
    assert [states[k] for k in crashed] == ["ERROR"]

    runner.resume_study(str(study))  # errored trials stay errored by default
    assert read(study, "trials.parquet").to_pylist() and \
        {r["trial_key"]: r["state"] for r in read(study, "trials.parquet").to_pylist()} == states

    outcome = runner.resume_study(str(study), rerun_errored=True)
    rows = read(study, "trials.parquet").to_pylist()
    assert len(rows) == len(spec.plan()) and {r["state"] for r in rows} == {"COMPLETED"}
    assert outcome.consolidated.states == {"COMPLETED": len(spec.plan())}
    complete = [t.user_attrs["trial_key"] for t in optuna_trials(spec)
                if t.state.name == "COMPLETE"]
    assert sorted(complete) == sorted(t["trial_key"] for t in spec.plan())


def test_a_trial_whose_data_cannot_be_read_fails_once_in_one_line(local_ray, tmp_path,
                                                                  capsys):
    """Validation sees the file (a node's copy may still be bad): the trial's DataError is
    recorded as ERROR with its one line and not retried (it would fail again)."""
    data = tmp_path / "data" / "frey"
    data.mkdir(parents=True)
    (data / "frey_rawface.mat").write_text("garbage")
    spec = load_spec(str(write_study(
        tmp_path, "baddata", data={"dataset": "frey", "data_dir": str(tmp_path / "data")},
        search={"grid": {"Ms": [1], "Ks": [10], "include_vae": False}},
        failure={"retries": 2})))
    outcome = runner.run_study(spec)
    rows = read(tmp_path / "baddata", "trials.parquet").to_pylist()
    assert [r["state"] for r in rows] == ["ERROR"] * len(spec.plan())
    for row in rows:
        assert "not a readable MATLAB file" in row["error"] and "\n" not in row["error"]
        assert row["attempts"] == 1
    assert outcome.consolidated.states == {"ERROR": len(spec.plan())}
    assert "retrying" not in capsys.readouterr().out  # Tune did not retry it
