"""The study folder's storage: one meaning of URI, atomic writes through the one helper, and
the plan written as data."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from study import store
from study.spec import load_spec


@pytest.mark.parametrize(("location", "uri"), [
    ("s3://bucket/x", True), ("gs://b/x", True), ("file:///tmp/x", False), ("/tmp/x", False),
    ("relative/x", False)])
def test_is_uri_has_one_meaning(location, uri):
    assert store.is_uri(location) is uri


def test_a_file_uri_is_a_local_study_everywhere(tmp_path):
    """file:// was a URI for the spec (an RDB required) and a local path for the writer; now it
    is local for both: no Optuna RDB needed, stored as an absolute path."""
    spec = load_spec("quickstart", {"study.storage": (tmp_path / "s").as_uri()})
    assert spec.storage == str(tmp_path / "s") and spec.optuna_storage_is_journal
    fs, root = store.filesystem(spec.storage)
    assert root == str(tmp_path / "s")


def test_write_bytes_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    fs, root = store.filesystem(str(tmp_path))
    path = store.join(root, "a", "f.json")
    store.write_json(fs, path, {"x": 1})

    def torn(self, data):  # the process dies half-way through writing the temporary file
        raise KeyboardInterrupt

    monkeypatch.setattr("pathlib.Path.write_bytes", torn)
    with pytest.raises(KeyboardInterrupt):
        store.write_json(fs, path, {"x": 2})
    monkeypatch.undo()
    assert store.read_json(fs, path) == {"x": 1}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f.json"]


def test_plan_round_trips_every_planned_trial(tmp_path):
    spec = load_spec("quickstart", {"study.storage": str(tmp_path / "s")})
    store.write_plan(spec.storage, spec.name, spec.plan())
    rows = store.read_plan(spec.storage)
    assert [r["trial_key"] for r in rows] == [t["trial_key"] for t in spec.plan()]
    table = pq.read_table(tmp_path / "s" / store.PLAN_FILE)
    assert table.schema.equals(store.PLAN_SCHEMA, check_metadata=False)
    for row, planned in zip(rows, spec.plan(), strict=True):
        assert row["M"] == planned["M"] and row["pi"] == pytest.approx(planned["pi"])
        assert row["device_requested"] == planned["device"]


def test_the_drivers_log_folder_is_local_also_for_a_study_on_an_object_store(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("GMMPVAE_SCRATCH", str(tmp_path / "scratch"))
    assert store.log_folder(str(tmp_path / "s")) == str(tmp_path / "s" / "logs")
    assert store.log_folder("s3://studies/team/q/") == str(
        tmp_path / "scratch" / "gmmpvae-logs" / "studies_team_q")
    assert store.scratch("gmmpvae-trials", "k") == tmp_path / "scratch" / "gmmpvae-trials" / "k"
