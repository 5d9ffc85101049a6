"""study.store: the explicit schemas, trial records, consolidation (idempotent, atomic, one
row per trial_key), and the small summaries. No Ray."""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.config import ModelConfig, TrainConfig, TrialConfig
from search_spaces import trial_key
from study import store, summary

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from trial_folders import flat, write_trial  # noqa: E402


def test_trials_schema_has_every_config_field_with_its_type():
    names = store.TRIALS_SCHEMA.names
    assert len(names) == len(set(names))
    model = [f.name for f in fields(ModelConfig)]
    train = ["device_requested" if f.name == "device" else f.name for f in fields(TrainConfig)]
    assert [n for n, _ in store.MODEL_COLUMNS] == model
    assert [n for n, _ in store.TRAIN_COLUMNS] == train
    schema = store.TRIALS_SCHEMA
    assert schema.field("pi").type == pa.list_(pa.float64())
    assert schema.field("image_shape").type == pa.list_(pa.int64())
    assert schema.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("ended_at").type == pa.timestamp("us", tz="UTC")
    for name in ("study", "trial_key", "state", "error", "epochs_run", "best_epoch",
                 "best_val_loss", "test_re", "test_kl", "test_kl_mc", "test_elbo_bound",
                 "test_elbo_mc", "test_ll", "is_samples", "train_seconds", "eval_seconds",
                 "node", "device", "seed", "versions", "git_rev", "trial_dir",
                 "schema_version"):
        assert name in names
    assert store.EPOCHS_SCHEMA.names == [
        "study", "trial_key", "epoch", "beta", "train_loss", "train_re", "train_kl",
        "val_loss", "val_re", "val_kl", "val_elbo_mc", "seconds", "spread_ratio", "members_used",
        "resp_perplexity", "bound_gap", "lse_gap"]
    assert store.TEST_LL_SCHEMA.names == [
        "study", "trial_key", "image", "log_likelihood", "elbo_bound", "elbo_mc", "re",
        "kl_bound", "kl_mc", "kl_lse"]
    assert store.SCHEMA_VERSION == 3
    for name in ("config_key", "continued_from", "carried_from"):  # version 3: budgets
        assert schema.field(name).type == pa.string()
    for schema in (store.TRIALS_SCHEMA, store.EPOCHS_SCHEMA, store.TEST_LL_SCHEMA):
        assert schema.metadata[b"schema_version"] == b"3"


def test_module_docstring_documents_every_column():
    doc = store.schemas.__doc__
    for schema in (store.TRIALS_SCHEMA, store.EPOCHS_SCHEMA, store.TEST_LL_SCHEMA):
        for name in schema.names:
            if name not in {n for n, _ in store.MODEL_COLUMNS + store.TRAIN_COLUMNS}:
                assert f"``{name}``" in doc, name


def test_consolidate_writes_one_row_per_trial_with_the_schemas(tmp_path):
    a, b, c = flat(seed=0), flat(seed=1), flat(M=3, K=5)
    ka = write_trial(tmp_path, a)
    kb = write_trial(tmp_path, b, state="ERROR", epochs=1)
    kc = write_trial(tmp_path, c, epochs=2)
    (tmp_path / "trials" / "no-record-yet").mkdir()  # a running trial
    out = store.consolidate(str(tmp_path), "s")
    assert (out.trials, out.epochs, out.test_ll) == (3, 6, 8)
    assert out.states == {"COMPLETED": 2, "ERROR": 1}
    trials = pq.read_table(tmp_path / "results" / "trials.parquet")
    assert trials.schema.equals(store.TRIALS_SCHEMA, check_metadata=False)
    assert trials["trial_key"].to_pylist() == sorted([ka, kb, kc])
    rows = {r["trial_key"]: r for r in trials.to_pylist()}
    assert rows[ka]["pi"] == [0.5, 0.5] and rows[ka]["image_shape"] == [8, 8]
    assert rows[ka]["started_at"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert rows[kb]["state"] == "ERROR" and rows[kb]["test_ll"] is None
    assert rows[kb]["epochs_run"] == 1 and rows[kb]["best_val_loss"] == 10.0
    assert rows[kc]["M"] == 3 and rows[kc]["K"] == 5 and rows[kc]["schema_version"] == 3
    assert json.loads(rows[ka]["versions"]) == {"torch": "x"}
    assert TrialConfig.from_flat({
        **{k: rows[ka][k] for k in a if k != "device"}, "device": "auto"}).to_flat() == a
    epochs = pq.read_table(tmp_path / "results" / "epochs.parquet")
    assert epochs.schema.equals(store.EPOCHS_SCHEMA, check_metadata=False)
    test_ll = pq.read_table(tmp_path / "results" / "test_ll.parquet")
    assert test_ll.schema.equals(store.TEST_LL_SCHEMA, check_metadata=False)
    assert set(test_ll["trial_key"].to_pylist()) == {ka, kc}  # not the failed trial's


def test_consolidate_is_idempotent_and_the_latest_attempt_wins(tmp_path):
    a = flat()
    write_trial(tmp_path, a, state="ERROR", epochs=1)
    write_trial(tmp_path, flat(seed=4))
    first = store.consolidate(str(tmp_path), "s")
    assert first.states == {"COMPLETED": 1, "ERROR": 1}
    files = [tmp_path / "results" / n for n in ("trials.parquet", "epochs.parquet",
                                                "test_ll.parquet")]
    before = [pq.read_table(f) for f in files]
    store.consolidate(str(tmp_path), "s")
    assert all(pq.read_table(f).equals(t) for f, t in zip(files, before, strict=True))
    # the same trial_key run again (a resumed study): its folder is overwritten
    write_trial(tmp_path, a, state="COMPLETED", epochs=3, offset=1.0)
    again = store.consolidate(str(tmp_path), "s")
    assert again.trials == 2 and again.states == {"COMPLETED": 2}
    epochs = pq.read_table(files[1]).to_pylist()
    assert [e["epoch"] for e in epochs if e["trial_key"] == trial_key(a)] == [1, 2, 3]
    leftovers = [p.name for p in (tmp_path / "results").iterdir()]
    assert sorted(leftovers) == ["epochs.parquet", "test_ll.parquet", "trials.parquet"]


def test_consolidate_of_an_empty_study(tmp_path):
    out = store.consolidate(str(tmp_path), "s")
    assert (out.trials, out.epochs, out.test_ll) == (0, 0, 0)
    table = pq.read_table(tmp_path / "results" / "trials.parquet")
    assert table.num_rows == 0 and table.schema.equals(store.TRIALS_SCHEMA,
                                                       check_metadata=False)


def test_write_bytes_replaces_atomically(tmp_path):
    fs, root = store.filesystem(str(tmp_path))
    path = store.join(root, "a", "f.json")
    store.write_json(fs, path, {"x": 1})
    store.write_json(fs, path, {"x": 2})
    assert store.read_json(fs, path) == {"x": 2}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f.json"]


def test_filesystem_of_paths_and_uris(tmp_path):
    fs, path = store.filesystem(f"file://{tmp_path}")
    assert path == str(tmp_path)
    assert store.filesystem("relative/x")[1].endswith("/relative/x")
    with pytest.raises(ValueError, match="cannot be opened"):
        store.filesystem("nosuchfs://bucket/x")


def test_make_record_rejects_unknown_states():
    with pytest.raises(ValueError, match="state='DONE'"):
        store.make_record(study="s", trial_key="k", state="DONE", config=flat())


@pytest.mark.parametrize("intervals, expected", [
    ([], 0),
    ([(0, 1)], 1),
    ([(0, 2), (1, 3)], 2),
    ([(0, 1), (1, 2)], 1),  # touching is not overlapping
    ([(0, 10), (1, 2), (3, 4), (1.5, 3.5)], 3),
    ([(0, 1), (None, 2)], 1),
])
def test_max_overlap(intervals, expected):
    assert summary.max_overlap(intervals) == expected


def test_best_records():
    records = [
        {"trial_key": "a", "state": "COMPLETED", "best_val_loss": 3.0, "test_ll": -5.0},
        {"trial_key": "b", "state": "COMPLETED", "best_val_loss": 2.0, "test_ll": -6.0},
        {"trial_key": "c", "state": "ERROR", "best_val_loss": 1.0, "test_ll": None},
    ]
    best = summary.best_records(records, "best_val_loss", "min")
    assert best["metric"]["trial_key"] == "b" and best["test_ll"]["trial_key"] == "a"
    assert summary.best_records([], "best_val_loss")["metric"] is None


def test_a_trial_on_uri_storage_publishes_its_folder_as_it_ends(tmp_path):
    """Without a shared file system a trial trains in a scratch folder and copies it to the
    study's storage (any pyarrow filesystem) as it ends; the record is written last."""
    from study.tune import trainable

    config = flat()
    key = trial_key(config)
    scratch = tmp_path / "scratch" / key
    (scratch / "checkpoint").mkdir(parents=True)
    (scratch / "metrics.json").write_text("{}")
    (scratch / "checkpoint" / "checkpoint.pt").write_bytes(b"x")
    fs, root = store.filesystem(str(tmp_path / "store"))
    trial_dir = store.join(root, store.TRIALS_DIR, key)
    record = store.make_record(study="s", trial_key=key, state="COMPLETED", config=config)
    trainable._finish(fs, trial_dir, scratch, True, None, record)
    stored = tmp_path / "store" / "trials" / key
    assert sorted(p.name for p in stored.iterdir()) == ["checkpoint", "metrics.json",
                                                         "trial.json"]
    assert store.read_record(fs, trial_dir)["state"] == "COMPLETED"
    assert not scratch.exists()  # a completed trial's scratch folder is removed


def test_records_carry_the_gpu_memory_peak_and_the_summary_names_devices():
    cfg = flat(precision="bf16")
    gpu = store.make_record(study="s", trial_key="a", state="COMPLETED", config=cfg,
                              metrics={"device": "cuda:0 NVIDIA H200",
                                       "gpu_memory_peak_mb": 812.5})
    cpu = store.make_record(study="s", trial_key="b", state="COMPLETED", config=cfg,
                              metrics={"device": "cpu", "gpu_memory_peak_mb": None})
    failed = store.make_record(study="s", trial_key="c", state="ERROR", config=cfg)
    assert (gpu["gpu_memory_peak_mb"], cpu["gpu_memory_peak_mb"]) == (812.5, None)
    assert gpu["precision"] == "bf16" and gpu["compile"] is False
    table = store.records_table([gpu, cpu, failed])
    assert table.column("gpu_memory_peak_mb").to_pylist() == [812.5, None, None]
    other = {**gpu, "trial_key": "d", "gpu_memory_peak_mb": 400.0}
    assert summary.device_lines([gpu, cpu, failed, other]) == [
        "device     auto: 1 trial(s)",
        "device     cpu: 1 trial(s)",
        "device     cuda:0 NVIDIA H200: 2 trial(s), GPU memory peak per trial max 812 MiB, "
        "mean 606 MiB",
    ]


def test_errored_to_rerun_leaves_an_error_a_larger_budget_carries():
    """Budgets 2 → 4 → 8. ``a`` errored at 2, carried to 4 and 8 (each carried row names ``a``,
    the first source); ``b`` continued to 4 and errored there, carried to 8; ``c`` errored at
    8 (its last budget), ``d`` completed: only ``c`` is run again; ``a`` and ``b`` are left
    (their carried rows would repeat a result they no longer have); carried copies never
    count; a study never extended runs every errored trial again."""
    def rec(key, state, carried_from=None):
        return {"trial_key": key, "state": state, "carried_from": carried_from}

    records = [rec("a2", "ERROR"), rec("a4", "ERROR", "a2"), rec("a8", "ERROR", "a2"),
               rec("b2", "COMPLETED"), rec("b4", "ERROR"), rec("b8", "ERROR", "b4"),
               rec("c2", "COMPLETED"), rec("c4", "COMPLETED"), rec("c8", "ERROR"),
               rec("d2", "COMPLETED"), rec("d4", "PRUNED"), rec("d8", "PRUNED", "d4")]
    assert store.errored_to_rerun(records) == (["c8"], ["a2", "b4"])
    assert store.errored_to_rerun(records[:1] + records[3:4] + [rec("e2", "ERROR")]) == \
        (["a2", "e2"], [])
    assert store.errored_to_rerun([]) == ([], [])
