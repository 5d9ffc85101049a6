"""An S3 study's refusals before Ray starts, and its lease, on a real SeaweedFS gateway (no Ray
here: these stay in the default suite, ≈ 15 s with the server's start)."""

from __future__ import annotations

import json
import os
import socket
import time

import pyarrow.fs as pafs
import pytest
from servers import BUCKET
from test_runner import write_study

from analysis.location import is_uri as analysis_is_uri
from study import cli, store
from study.store import lock


def listing(prefix: str = BUCKET) -> list[str]:
    fs, path = pafs.FileSystem.from_uri(f"s3://{prefix}")
    return [i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_analysis_and_study_agree_on_what_a_uri_is():
    for text in ("s3://b/x", "gs://b", "file:///tmp/x", "/tmp/x", "rel/x", "hdfs://h/p"):
        assert analysis_is_uri(text) == store.is_uri(text), text


@pytest.mark.parametrize("case", ["secret", "key", "bucket"])
def test_wrong_keys_or_a_missing_bucket_are_one_line_before_ray(case, s3_env, s3_study,
                                                              tmp_path, monkeypatch, capsys):
    study = s3_study if case != "bucket" else s3_study.replace(f"//{BUCKET}/", "//nobucket/")
    before = listing()
    if case == "secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    if case == "key":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    path = write_study(tmp_path, "bad", study={"storage": study,
                                                "optuna_storage": "sqlite:///" + str(
                                                    tmp_path / "o.db")})
    start = time.monotonic()
    assert cli.main(["run", str(path)]) == 2
    err = one_line(capsys)
    seconds = time.monotonic() - start
    print(f"{case}: {err} ({seconds:.1f} s)")
    if case == "bucket":
        assert "the bucket 'nobucket' does not exist" in err
    else:
        assert "access denied (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)" in err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_env["AWS_ACCESS_KEY_ID"])
    assert listing() == before  # nothing written
    assert not (tmp_path / "o.db").exists()
    import ray

    assert not ray.is_initialized()


def test_an_endpoint_that_does_not_answer_is_one_line(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    path = write_study(tmp_path, "down", study={"storage": "s3://studies/down",
                                                 "optuna_storage": "sqlite:///" + str(
                                                     tmp_path / "o.db")})
    assert cli.main(["run", str(path)]) == 2
    assert "the endpoint does not answer (check AWS_ENDPOINT_URL)" in one_line(capsys)


def test_a_second_driver_is_refused_by_the_lease_and_an_expired_one_is_taken_over(
        s3_study, tmp_path, capsys):
    fs, root = store.filesystem(s3_study)
    path = write_study(tmp_path, "leased", study={"storage": s3_study,
                                                   "optuna_storage": "sqlite:///" + str(
                                                       tmp_path / "o.db")})
    with lock.study_lock(fs, root, s3_study, settle_seconds=0.5) as holder:
        assert holder["pid"] == os.getpid()
        assert cli.main(["run", str(path)]) == 2
        err = one_line(capsys)
        assert (f"study {s3_study} is already being run by pid {os.getpid()} on "
                f"{socket.gethostname()}") in err, err
        assert "driver.lease" in err
        assert lock.current_holder(fs, root)["token"] == holder["token"]
    assert lock.current_holder(fs, root) is None  # released: the lease is gone
    # a lease that another host stopped renewing two minutes ago binds nobody
    stale = {"host": "node-7", "pid": 4242, "token": "old", "lease_seconds": 60.0,
             "renewed_at": time.time() - 120, "started_at": "2026-01-01T00:00:00+00:00"}
    store.write_json(fs, f"{root}/{lock.LEASE_FILE}", stale)
    assert lock.current_holder(fs, root) is None
    with lock.study_lock(fs, root, s3_study, settle_seconds=0.5) as holder:
        current = json.loads(store.read_bytes(fs, f"{root}/{lock.LEASE_FILE}"))
        assert current["token"] == holder["token"] != "old"
    # a live lease of another host is respected
    store.write_json(fs, f"{root}/{lock.LEASE_FILE}", {**stale, "renewed_at": time.time()})
    with pytest.raises(lock.StudyLockedError, match="pid 4242 on node-7"):
        with lock.study_lock(fs, root, s3_study, settle_seconds=0.5):
            pass
    fs.delete_file(f"{root}/{lock.LEASE_FILE}")


def test_report_of_a_missing_s3_study_is_one_line(s3_study, capsys):
    assert cli.main(["report", s3_study]) == 2
    assert f"study folder {s3_study} does not exist" in one_line(capsys)


def test_a_wrong_postgresql_password_is_one_line_without_the_password(pg_url, s3_study,
                                                                      tmp_path, capsys):
    bad = pg_url.replace(":gmmpvae-pw@", ":not-the-password@")
    path = write_study(tmp_path, "pgbad", study={"storage": s3_study, "optuna_storage": bad})
    before = listing()
    assert cli.main(["run", str(path)]) == 2
    err = one_line(capsys)
    assert "password authentication failed" in err and "not-the-password" not in err, err
    assert "postgresql+psycopg://gmmpvae:***@127.0.0.1" in err
    assert listing() == before


def test_the_bounded_s3_client_is_the_one_from_uri_gives_with_fewer_retries(s3_env, s3_study):
    """`study.store.outage.bounded` rebuilds pyarrow's S3 client from the environment (public
    constructor arguments) to cap its retries: it must still reach the same endpoint, region and
    bucket as `FileSystem.from_uri`'s. If a pyarrow release changes what ``from_uri`` reads,
    this fails here rather than in a user's study."""
    plain, path = pafs.FileSystem.from_uri(s3_study)
    fs, root = store.filesystem(s3_study)
    assert isinstance(fs, pafs.S3FileSystem) and fs is not plain and root == path
    assert fs.region == plain.region
    probe = store.join(root, "bounded-probe.json")
    store.write_json(fs, probe, {"ok": True})
    assert store.read_json(plain, probe) == {"ok": True}  # the same store, seen both ways
    fs.delete_file(probe)
    assert not store.exists(plain, probe)


def test_many_files_copied_at_once_through_the_patient_store_do_not_deadlock(s3_env, s3_study,
                                                                            tmp_path):
    """What Tune's experiment sync does (`pyarrow.fs.copy_files`, threaded): closing each
    destination file runs on pyarrow's I/O thread pool, and the patient filesystem's close
    uploads through the S3 client. With the client's background writes, each close waited on
    an upload queued to that same pool: 8 files at once (the pool's size) and nothing ever
    moved — a resumed study on S3 hung for good (CI, stop 28). Run in a thread, so that a
    deadlock fails here instead of hanging the suite."""
    import threading

    source = tmp_path / "experiment"
    for i in range(40):
        (source / f"trial_{i:02d}").mkdir(parents=True)
        (source / f"trial_{i:02d}" / "result.json").write_text(json.dumps({"i": i}))
    folder = store.StudyFolder.open(s3_study).waiting_out(30)
    done: list[bool] = []

    def copy() -> None:
        pafs.copy_files(str(source), folder.path("tune"),
                        source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=folder.fs, use_threads=True)
        done.append(True)

    worker = threading.Thread(target=copy, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert done, "copy_files through the patient filesystem deadlocked (60 s)"
    fs, root = store.filesystem(s3_study)
    assert store.read_json(fs, store.join(root, "tune", "trial_39", "result.json")) == {"i": 39}
