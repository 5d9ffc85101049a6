"""`study.store.outage`: which object-store errors are waited for (real pyarrow texts captured
from SeaweedFS), and a patient filesystem over a flaky one (no server): retried whole, the
outage announced once and its end, `Unreachable` after the grace, local folders untouched."""

from __future__ import annotations

import pickle
import re
import threading
import time
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from study import store
from study.errors import Unreachable
from study.store import lock, outage

# pyarrow 25's words, captured against SeaweedFS 4.48 on loopback (tests/cloud/servers.py).
FROZEN = ("When initiating multiple part upload for key 'probe/c.txt' in bucket 'studies': AWS "
          "Error NETWORK_CONNECTION during CreateMultipartUpload operation: curlCode: 28, "
          "Timeout was reached; Details: Operation too slow. Less than 1 bytes/sec transferred "
          "the last 3 seconds")
FROZEN_HEAD = ("When getting information for key 'probe/a.txt' in bucket 'studies': AWS Error "
               "NETWORK_CONNECTION during HeadObject operation: curlCode: 28, Timeout was "
               "reached; Details: Operation too slow. Less than 1 bytes/sec transferred the "
               "last 3 seconds")
REFUSED = ("When getting information for key 'probe/c.txt' in bucket 'studies': AWS Error "
           "NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Could not connect to "
           "server; Details: Failed to connect to 127.0.0.1 port 34777 after 0 ms: Could not "
           "connect to server")
NO_BUCKET = ("When initiating multiple part upload for key 'x' in bucket 'nobucket': AWS Error "
             "NO_SUCH_BUCKET during CreateMultipartUpload operation: The specified bucket does "
             "not exist (Request ID: 18ED7DD9D36B845930D66912)")
BAD_KEY = ("When initiating multiple part upload for key 'probe/b' in bucket 'studies': AWS "
           "Error INVALID_ACCESS_KEY_ID during CreateMultipartUpload operation: The access key "
           "ID you provided does not exist in our records. (Request ID: 18ED7DD9D390FD735735)")
DENIED = ("When reading information for key 'probe/a.txt' in bucket 'studies': AWS Error "
          "ACCESS_DENIED during HeadObject operation: No response body.")
MISSING = ("[Errno 2] Path does not exist 'studies/probe/nope.txt'. Detail: [errno 2] No such "
           "file or directory")
# The AWS SDK's names for throttling and server errors (not reproducible with SeaweedFS).
SLOW_DOWN = ("When uploading part for key 'k' in bucket 'b': AWS Error SLOW_DOWN during "
             "UploadPart operation: Please reduce your request rate.")
HTTP_503 = ("When getting information for key 'k' in bucket 'b': AWS Error UNKNOWN (HTTP "
            "status 503) during HeadObject operation: No response body.")


@pytest.mark.parametrize("text", [FROZEN, FROZEN_HEAD, REFUSED, SLOW_DOWN, HTTP_503])
def test_outage_errors_are_transient(text):
    assert outage.store_outage(OSError(text))


@pytest.mark.parametrize("error", [OSError(NO_BUCKET), OSError(BAD_KEY), OSError(DENIED),
                                   FileNotFoundError(MISSING), ValueError(FROZEN),
                                   PermissionError("denied")])
def test_refusals_and_missing_things_are_not(error):
    assert not outage.store_outage(error)


def test_socket_errors_are_transient():
    assert outage.store_outage(ConnectionRefusedError()) and outage.store_outage(TimeoutError())


class Flaky(pafs.FileSystemHandler):
    """A local filesystem whose calls fail with ``text`` while ``down`` (or the first
    ``failures`` calls), counting every call."""

    def __init__(self, text: str = FROZEN, failures: int = 0) -> None:
        self.local, self.text, self.failures = pafs.LocalFileSystem(), text, failures
        self.calls, self.down = 0, False

    def _hit(self):
        self.calls += 1
        if self.down or self.failures > 0:
            self.failures -= 1
            raise OSError(self.text)
        return self.local

    def get_type_name(self): return "flaky"
    def equals(self, other): return other is self
    def normalize_path(self, path): return path
    def get_file_info(self, paths): return self._hit().get_file_info(paths)
    def get_file_info_selector(self, sel): return self._hit().get_file_info(sel)
    def create_dir(self, path, recursive): self._hit().create_dir(path, recursive=recursive)
    def delete_dir(self, path): self._hit().delete_dir(path)
    def delete_dir_contents(self, path, missing_dir_ok=False):
        self._hit().delete_dir_contents(path, missing_dir_ok=missing_dir_ok)
    def delete_root_dir_contents(self): raise NotImplementedError
    def delete_file(self, path): self._hit().delete_file(path)
    def move(self, src, dest): self._hit().move(src, dest)
    def copy_file(self, src, dest): self._hit().copy_file(src, dest)
    def open_input_stream(self, path): return self._hit().open_input_stream(path)
    def open_input_file(self, path): return self._hit().open_input_file(path)
    def open_output_stream(self, path, metadata):
        return self._hit().open_output_stream(path, metadata=metadata)
    def open_append_stream(self, path, metadata): raise NotImplementedError


def patient_over(flaky: Flaky, grace: float = 30.0, what: str = ""):
    """A patient store over ``flaky`` (its own name: outages are per store and process)."""
    lines: list[str] = []
    what = what or f"the object store of s3://b/{uuid.uuid4().hex[:8]}"
    return outage.patient_filesystem(pafs.PyFileSystem(flaky), what, grace, lines.append), lines


def test_writes_and_reads_wait_out_a_short_outage(tmp_path):
    flaky = Flaky(failures=2)
    fs, lines = patient_over(flaky)
    path = str(tmp_path / "trial" / "trial.json")
    store.write_json(fs, path, {"state": "COMPLETED"})  # create_dir fails twice, then works
    assert store.read_json(fs, path) == {"state": "COMPLETED"}
    assert len(lines) == 2, lines  # one line as the outage starts, one as it ends
    assert re.match(r"the object store of s3://b/\w+ does not answer \(When initiating",
                    lines[0]), lines
    assert lines[0].endswith("retrying for up to 30 s")
    assert re.match(r"the object store of s3://b/\w+ answers again \(after \d+ s\)$", lines[1])


def test_an_upload_is_retried_whole(tmp_path):
    """The upload happens when the file is closed; a failed one is redone from the start."""
    flaky = Flaky()
    fs, _ = patient_over(flaky)
    path = str(tmp_path / "epochs.parquet")
    table = pa.table({"epoch": list(range(100))})
    out = fs.open_output_stream(path)
    pq.write_table(table, out)
    flaky.failures = 1  # the upload's first try fails
    out.close()
    assert pq.read_table(path).equals(table)
    assert pq.read_table(path, filesystem=fs).equals(table)


def test_copy_folder_through_a_patient_store(tmp_path):
    (tmp_path / "src").mkdir()
    for name in ("a.json", "b.parquet"):
        (tmp_path / "src" / name).write_bytes(name.encode() * 100)
    flaky = Flaky(failures=1)
    fs, _ = patient_over(flaky)
    store.copy_folder(str(tmp_path / "src"), fs, str(tmp_path / "dst"))
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["a.json", "b.parquet"]
    assert (tmp_path / "dst" / "a.json").read_bytes() == b"a.json" * 100


def test_a_long_outage_ends_in_one_unreachable_line(tmp_path):
    flaky = Flaky()
    flaky.down = True
    fs, lines = patient_over(flaky, grace=2.0)
    start = time.monotonic()
    with pytest.raises(Unreachable) as err:
        store.write_json(fs, str(tmp_path / "x.json"), {})
    assert 2.0 <= time.monotonic() - start < 4.0
    text = str(err.value)
    assert re.match(r"the object store of s3://b/\w+ did not answer for 2 s \(last error: "
                    r"When initiating multiple part upload", text), text
    assert "\n" not in text and len(lines) == 1
    assert not (tmp_path / "x.json").exists()
    # The outage's grace is spent: a later call tries once and gives up, announced no more.
    time.sleep(1.0)
    calls, start = flaky.calls, time.monotonic()
    with pytest.raises(Unreachable, match=r"did not answer for 3 s \(last error"):
        fs.get_file_info(str(tmp_path))  # the outage's length, not this call's
    assert flaky.calls == calls + 1 and time.monotonic() - start < 0.5 and len(lines) == 1
    flaky.down = False  # back: it answers, and says so
    assert fs.get_file_info(str(tmp_path)).type == pafs.FileType.Directory
    assert len(lines) == 2 and "answers again" in lines[1]


def test_an_outage_is_announced_once_per_process(tmp_path):
    """The driver has several patient stores of one study (its own, Tune's, its callbacks'):
    one line as the outage starts, one as it ends."""
    flaky = Flaky(failures=4)
    what = f"the object store of s3://b/{uuid.uuid4().hex[:8]}"
    lines: list[str] = []
    one = outage.patient_filesystem(pafs.PyFileSystem(flaky), what, 30.0, lines.append)
    two = outage.patient_filesystem(pafs.PyFileSystem(flaky), what, 30.0, lines.append)
    errors = []

    def read(fs):
        try:
            fs.get_file_info(str(tmp_path))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(fs,)) for fs in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(lines) == 2, lines
    assert lines[0].startswith(f"{what} does not answer (")
    assert lines[0].endswith("retrying for up to 30 s")
    assert lines[1].startswith(f"{what} answers again (after "), lines


def test_the_driver_warning_is_the_drivers_only(capsys, caplog):
    announce = pickle.loads(pickle.dumps(outage.DriverWarning()))
    announce("the object store of s3://b/q does not answer")
    assert capsys.readouterr().err == ("gmmpvae: warning: the object store of s3://b/q does "
                                       "not answer\n")
    announce.pid = -1  # as in a trial's process
    announce("elsewhere")
    assert capsys.readouterr().err == "" and "elsewhere" in caplog.text


def test_a_refusal_is_raised_at_once(tmp_path):
    flaky = Flaky(text=DENIED, failures=1)
    fs, lines = patient_over(flaky)
    start = time.monotonic()
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        fs.get_file_info(str(tmp_path))
    assert time.monotonic() - start < 0.5 and flaky.calls == 1 and not lines


def test_missing_files_stay_missing(tmp_path):
    fs, _ = patient_over(Flaky())
    assert store.read_record(fs, str(tmp_path / "nothing")) is None
    with pytest.raises(FileNotFoundError):
        store.read_bytes(fs, str(tmp_path / "nope"))


def test_a_local_folder_is_not_made_patient(tmp_path):
    folder = store.StudyFolder.open(str(tmp_path))
    assert folder.waiting_out(5.0) is folder
    remote = store.StudyFolder("s3://b/q", pafs.PyFileSystem(Flaky()), str(tmp_path))
    patient = remote.waiting_out(5.0)
    assert isinstance(patient.fs, pafs.PyFileSystem) and patient.root == remote.root
    assert patient.fs.handler.patience.what == "the object store of s3://b/q"


def test_a_patient_store_pickles(tmp_path):
    """It travels to Ray's workers and into Tune's state with the grace and the name."""
    fs = outage.patient_filesystem(pafs.LocalFileSystem(), "the object store of s3://b/q", 7.0)
    copy = pickle.loads(pickle.dumps(fs)).handler
    assert (copy.patience.what, copy.patience.grace) == ("the object store of s3://b/q", 7.0)
    copy = pickle.loads(pickle.dumps(fs))
    store.write_json(copy, str(tmp_path / "x.json"), {"a": 1})
    assert store.read_json(copy, str(tmp_path / "x.json")) == {"a": 1}


def test_bounded_keeps_other_filesystems():
    local = pafs.LocalFileSystem()
    assert outage.bounded(local, "/tmp/x") is local


# ----------------------------------------------------------------------------------------------
# The driver's lease through an outage (study.store.lock)


def hold_lease(tmp_path, flaky: Flaky, lost: list[str], **kw):
    """A lease on ``flaky``; why it was lost (told by the lease's thread) goes to ``lost``."""
    return lock.study_lock(pafs.PyFileSystem(flaky), str(tmp_path), "s3://b/q", force_lease=True,
                           settle_seconds=0, on_lost=lost.append, **kw)


def told(lost: list[str]) -> str | None:
    return lost[0] if lost else None


def test_a_lease_outlives_an_outage_shorter_than_it(tmp_path):
    flaky, lost = Flaky(), []
    with hold_lease(tmp_path, flaky, lost, lease_seconds=6, outage_grace=30) as holder:
        first = holder["renewed_at"]
        time.sleep(1.5)
        flaky.down = True  # the renewal at 2 s finds the store away for 1.5 s
        time.sleep(1.5)
        flaky.down = False
        time.sleep(3.0)  # retried within 1 + 2 s of backoff
        assert told(lost) is None
        assert holder["renewed_at"] > first + 2 and flaky.calls > 4
    assert told(lost) is None and not (tmp_path / lock.LEASE_FILE).exists()


@pytest.mark.parametrize(("lease_seconds", "grace", "gives_up_by"), [(3, 100, 3.0), (6, 1, 4.0)])
def test_a_lease_not_renewable_stops_the_driver(tmp_path, lease_seconds, grace, gives_up_by):
    """Before a second driver could take it over (lease less a margin), or after the grace."""
    flaky, lost = Flaky(), []
    with hold_lease(tmp_path, flaky, lost, lease_seconds=lease_seconds, outage_grace=grace):
        flaky.down = True
        start = time.monotonic()
        while told(lost) is None and time.monotonic() - start < 10:
            time.sleep(0.05)
        took = time.monotonic() - start
        why = told(lost)
    assert len(lost) == 1  # told once, to this driver's lock only
    assert why is not None and took <= gives_up_by, (why, took)
    assert why.startswith("the object store of s3://b/q did not answer for "), why
    assert "NETWORK_CONNECTION" in why
    flaky.down = False
    assert (tmp_path / lock.LEASE_FILE).exists()  # left to expire: it may not be ours now


def test_lease_for_outlasts_the_grace():
    assert lock.lease_for(12) == lock.LEASE_SECONDS
    lease = lock.lease_for(120)
    margin = min(lease / 6, 15.0)
    assert lease - lease / 3 - margin >= 120
