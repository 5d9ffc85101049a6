"""study.store with one configuration at several budgets (schema version 3): each budget's
trial keeps its rows, once each; a carried trial repeats its source's result under its own
key; version-2 trial folders consolidate with the new columns null and config_key derived."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from search_spaces import complete_config, config_key, trial_key
from study import store
from study.extend_plan import CARRY, checkpoints_left, plan_extend

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from trial_folders import flat, write_trial  # noqa: E402


def tables(study_dir) -> dict[str, list[dict]]:
    results = Path(study_dir) / store.RESULTS_DIR
    return {name: pq.read_table(results / f"{name}.parquet").to_pylist()
            for name in ("trials", "epochs", "test_ll")}


def carry(study_dir, source_key: str, config: dict) -> str:
    """A carried trial's folder, as `gmmpvae extend` writes it: its record only."""
    fs, root = store.filesystem(str(study_dir))
    source = store.read_record(fs, store.join(root, store.TRIALS_DIR, source_key))
    key = trial_key(config)
    folder = store.join(root, store.TRIALS_DIR, key)
    store.write_record(fs, folder, store.carried_record(source, config, key, folder))
    return key


def budget_study(study_dir) -> dict[str, str]:
    """Two configurations at 3 epochs, then at 6: one continued, one (stopped early at 2)
    carried."""
    a3, b3 = flat(max_epochs=3), flat(max_epochs=3, seed=1)
    keys = {"a3": write_trial(study_dir, a3), "b3": write_trial(
        study_dir, b3, epochs=2, stopped_early=True, offset=1.0)}
    keys["a6"] = write_trial(study_dir, {**a3, "max_epochs": 6}, epochs=6, offset=0.5,
                             continued_from=keys["a3"])
    keys["b6"] = carry(study_dir, keys["b3"], {**b3, "max_epochs": 6})
    return keys


def test_every_budget_keeps_its_rows_once_each(tmp_path):
    keys = budget_study(tmp_path)
    out = store.consolidate(str(tmp_path), "s")
    assert out.trials == 4 and not out.damaged
    t = tables(tmp_path)
    rows = {r["trial_key"]: r for r in t["trials"]}
    assert set(rows) == set(keys.values())
    budget = {k: (rows[k]["max_epochs"], rows[k]["epochs_run"], rows[k]["stopped_early"])
              for k in rows}
    assert budget == {keys["a3"]: (3, 3, False), keys["b3"]: (3, 2, True),
                      keys["a6"]: (6, 6, False), keys["b6"]: (6, 2, True)}
    assert rows[keys["a3"]]["config_key"] == rows[keys["a6"]]["config_key"] \
        == config_key(flat(max_epochs=3))
    assert rows[keys["b3"]]["config_key"] == rows[keys["b6"]]["config_key"] \
        != rows[keys["a3"]]["config_key"]
    assert rows[keys["a6"]]["continued_from"] == keys["a3"]
    assert rows[keys["b6"]]["carried_from"] == keys["b3"]
    for key in (keys["a3"], keys["b3"]):
        assert rows[key]["continued_from"] is None and rows[key]["carried_from"] is None
    # the carried row repeats its source's result; its config is its own budget's
    for name in ("state", "test_ll", "best_epoch", "best_val_loss", "train_seconds", "seed"):
        assert rows[keys["b6"]][name] == rows[keys["b3"]][name], name
    # each (trial_key, epoch) and (trial_key, image) once; a carried trial's are its source's
    epochs = [(r["trial_key"], r["epoch"]) for r in t["epochs"]]
    assert len(epochs) == len(set(epochs)) == 3 + 2 + 6 + 2
    losses = {k: [r["val_loss"] for r in t["epochs"] if r["trial_key"] == k] for k in rows}
    assert losses[keys["b6"]] == losses[keys["b3"]]
    images = [(r["trial_key"], r["image"]) for r in t["test_ll"]]
    assert len(images) == len(set(images)) == 4 * 4
    ll = {k: {r["log_likelihood"] for r in t["test_ll"] if r["trial_key"] == k} for k in rows}
    assert ll[keys["b6"]] == ll[keys["b3"]] == {-10.0} and ll[keys["a6"]] == {-9.5}
    before = tables(tmp_path)
    store.consolidate(str(tmp_path), "s")
    assert tables(tmp_path) == before  # idempotent


def test_a_version_2_trial_folder_reads_with_the_new_columns_null(tmp_path):
    key = write_trial(tmp_path, flat(max_epochs=3))
    path = tmp_path / store.TRIALS_DIR / key / store.RECORD_FILE
    record = json.loads(path.read_text())
    for name in ("continued_from", "carried_from"):
        del record[name]  # a trial.json written by schema version 2
    record["schema_version"] = 2
    path.write_text(json.dumps(record))
    store.consolidate(str(tmp_path), "s")
    (row,) = tables(tmp_path)["trials"]
    assert row["continued_from"] is None and row["carried_from"] is None
    assert row["config_key"] == config_key(flat()) and row["schema_version"] == 3
    trials = pq.read_table(tmp_path / store.RESULTS_DIR / store.TRIALS_FILE)
    assert trials.schema.metadata[b"schema_version"] == b"3"


def test_a_carried_trial_whose_source_is_torn_is_left_out_and_named(tmp_path):
    keys = budget_study(tmp_path)
    (tmp_path / store.TRIALS_DIR / keys["b3"] / store.EPOCHS_FILE).write_bytes(b"torn")
    out = store.consolidate(str(tmp_path), "s")
    assert set(out.damaged) == {keys["b3"], keys["b6"]}
    assert keys["b3"] in out.damaged[keys["b6"]] and "\n" not in out.damaged[keys["b6"]]
    assert {r["trial_key"] for r in tables(tmp_path)["trials"]} == {keys["a3"], keys["a6"]}


def test_record_config_is_the_flat_config_back():
    config = flat(max_epochs=7, device="cpu")
    record = store.make_record(study="s", trial_key="k", state=store.COMPLETED, config=config)
    back = store.record_config(record)
    assert back == {k: v for k, v in config.items() if v is not None}
    assert complete_config(back) == config


def test_an_extension_planned_from_the_folders_and_consolidated_holds_each_budget_once(tmp_path):
    """The store and the plan together, no Ray: a 3-epoch study (one full trial, one stopped
    early) extended to 6 — continued trials as the trainable would write them, carried records
    as `extend` writes them — then planned again: nothing left, every (configuration, budget)
    once in trials.parquet."""
    a3, b3 = flat(max_epochs=3), flat(max_epochs=3, seed=1)
    write_trial(tmp_path, a3)
    write_trial(tmp_path, b3, epochs=2, stopped_early=True)
    for key in (trial_key(a3), trial_key(b3)):  # their last checkpoints, as run_trial leaves
        path = tmp_path / store.TRIALS_DIR / key / "checkpoint" / "checkpoint.pt"
        path.parent.mkdir()
        path.write_bytes(b"x")
    folder = store.StudyFolder.of(str(tmp_path))

    def plan():
        records = store.read_records(folder.fs, folder.root)
        keys = [r["trial_key"] for r in records]
        return plan_extend(records, records, max_epochs=6,
                           checkpoints=checkpoints_left(folder, keys))

    step = plan().step
    for t in step.trials:
        if t.how == CARRY:
            carry(tmp_path, t.source, t.config)
        else:
            write_trial(tmp_path, t.config, epochs=6, continued_from=t.source)
    assert plan().step is None
    store.consolidate(str(tmp_path), "s")
    rows = tables(tmp_path)["trials"]
    pairs = sorted((r["config_key"], r["max_epochs"]) for r in rows)
    assert pairs == sorted({(config_key(c), b) for c in (a3, b3) for b in (3, 6)})
    by_budget = {(r["seed"], r["max_epochs"]): r for r in rows}
    assert by_budget[(0, 6)]["continued_from"] == trial_key(a3)
    assert by_budget[(1, 6)]["carried_from"] == trial_key(b3)
