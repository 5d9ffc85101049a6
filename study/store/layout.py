"""Where a study lives: its folder's layout, local paths and filesystem URIs, atomic writes.

A study folder is a local path or a pyarrow filesystem URI (``s3://bucket/studies/x``)::

    STUDY/study.json        the resolved spec, git revision, versions (`STUDY_FILE`)
    STUDY/plan.parquet      one row per planned trial: its key and its flat config (`PLAN_FILE`)
    STUDY/optuna.journal    the Optuna study, unless the spec names an RDB URL (`OPTUNA_JOURNAL`)
    STUDY/tune/             Ray Tune's experiment state (`TUNE_DIR`)
    STUDY/trials/<key>/     one folder per trial (`TRIALS_DIR`; files: `study.store.schemas`)
    STUDY/results/          the consolidated Parquet dataset (`RESULTS_DIR`)

`StudyFolder` is a study folder resolved once (its filesystem and root), passed down by the
run, the repair and the readers. One meaning of "URI" everywhere (`is_uri`): ``scheme://…``
other than ``file://``; a ``file://`` location is a local path. Every write goes through
`write_bytes`: on a local disk a temporary file renamed over the final name
(`models.checkpoint.atomic_write`, the one helper of the code base: models/ cannot import
study/, so the helper lives below both), on an object store one upload (atomic there by
nature). Nothing here imports Ray.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from models.checkpoint import atomic_write
from study.patience import one_line
from study.store.outage import bounded, log_warning, patient_filesystem, store_name

STUDY_FILE = "study.json"
PLAN_FILE = "plan.parquet"
OPTUNA_JOURNAL = "optuna.journal"
TUNE_DIR = "tune"
TRIALS_DIR = "trials"
RESULTS_DIR = "results"
LOG_DIR = "logs"
FILE_SCHEME = "file://"


def now_utc() -> datetime:
    """The current time, in UTC (records' and markers' times, `utc_stamp`)."""
    return datetime.now(UTC)


def utc_stamp() -> str:
    """The current UTC time as it goes into file names (``.torn-``, ``.set-aside-``, ``.old-``
    suffixes): ``20261201T220000Z``."""
    return now_utc().strftime("%Y%m%dT%H%M%SZ")


def is_uri(location: str | os.PathLike[str]) -> bool:
    """True for a remote filesystem URI (``scheme://…`` other than ``file://``)."""
    text = str(location)
    return "://" in text and not text.startswith(FILE_SCHEME)


def local_path(location: str | os.PathLike[str]) -> str:
    """A local location (a path or ``file://`` URI) as an absolute path."""
    text = str(location)
    if text.startswith(FILE_SCHEME):
        text = text[len(FILE_SCHEME):]
    return os.path.abspath(os.path.expanduser(text))


def normalise(location: str) -> str:
    """How a study's location is stored: a URI as given, anything local as an absolute path."""
    return location if is_uri(location) else local_path(location)


def filesystem(location: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of a local location or a URI.

    An S3 client's single calls end within seconds when the server hangs
    (`study.store.outage.bounded`): waiting out an outage is `StudyFolder.waiting_out`'s.
    Raises ``ValueError`` (one line) for a URI pyarrow cannot open (unknown scheme, …)."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), local_path(location)
    try:
        fs, path = pafs.FileSystem.from_uri(str(location))
        return bounded(fs, str(location)), path
    except (pa.ArrowException, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"storage {str(location)!r} cannot be opened: {first}") from None


def join(*parts: str) -> str:
    """Join path parts with '/' (pyarrow paths, local or remote)."""
    return "/".join([parts[0].rstrip("/"), *(p.strip("/") for p in parts[1:])])


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp + rename locally; one upload elsewhere)."""
    if isinstance(fs, pafs.LocalFileSystem):
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
        return
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(data)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def write_json(fs: pafs.FileSystem, path: str, obj: Any) -> None:
    write_bytes(fs, path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(fs: pafs.FileSystem, path: str) -> Any:
    return json.loads(read_bytes(fs, path).decode("utf-8"))


def write_table(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """Write a Parquet file atomically."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_bytes(fs, path, sink.getvalue().to_pybytes())


def copy_folder(local_dir: str, fs: pafs.FileSystem, dest: str) -> None:
    """Copy a local folder's files to ``dest`` on ``fs`` (how a trial on a node without the
    study's storage mounted publishes its folder)."""
    fs.create_dir(dest, recursive=True)
    pafs.copy_files(local_dir, dest, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)


def move_folder(fs: pafs.FileSystem, source: str, dest: str) -> None:
    """Rename a folder: one rename locally; on an object store (no folders, and pyarrow's
    ``move`` renames single objects only) a copy of every object, then the source deleted."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.move(source, dest)
        return
    pafs.copy_files(source, dest, source_filesystem=fs, destination_filesystem=fs)
    fs.delete_dir(source)


def scratch(*parts: str) -> Path:
    """A path in this machine's scratch space (``$GMMPVAE_SCRATCH``, default the system's temp
    folder): where a trial of a study on an object store trains before it uploads its folder,
    and where the driver of such a study keeps Ray's log (`log_folder`)."""
    return Path(os.environ.get("GMMPVAE_SCRATCH", tempfile.gettempdir()), *parts)


def log_folder(location: str) -> str:
    """Where the driver's log of Ray's own lines goes: ``STUDY/logs`` for a local study; for a
    study on an object store, a local folder named after its URI under `scratch`
    (``gmmpvae-logs/<bucket>_<path>``): a log file is appended to, which object stores cannot."""
    if not is_uri(location):
        return os.path.join(local_path(location), LOG_DIR)
    name = "_".join(p for p in str(location).split("://", 1)[1].split("/") if p)
    return str(scratch("gmmpvae-logs", name or "study"))


def check_store(location: str) -> None:
    """An object store location answers, its bucket exists and a probe object can be written
    and deleted there (wrong keys, a missing bucket, a refused endpoint: one ``ValueError``
    line naming it). Nothing is left: a folder marker the store made for the probe is removed.
    The endpoint and keys are the environment's (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``; pyarrow reads them), as for every S3 tool."""
    where = f"study.storage={location!r}"
    try:
        fs, root = filesystem(location)
    except ValueError as exc:
        raise ValueError(f"{where} is not reachable: {exc}") from None
    bucket = root.strip("/").split("/", 1)[0]
    try:
        if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise ValueError(f"{where}: the bucket {bucket!r} does not exist (create it first; "
                             "gmmpvae does not create buckets)")
        existed = exists(fs, root)
        probe = join(root, f".gmmpvae-probe-{uuid.uuid4().hex}")
        with fs.open_output_stream(probe) as out:
            out.write(b"")
        fs.delete_file(probe)
        if not existed and root.strip("/") != bucket and exists(fs, root):
            fs.delete_dir(root)  # the marker the store left for the probe's folder
    except OSError as exc:
        raise ValueError(f"{where} is not writable: {store_error(exc)}") from None


def store_error(exc: BaseException) -> str:
    """An object store's error in a few words: pyarrow's first line, AWS's error name kept."""
    text = one_line(exc)
    for name, words in (("ACCESS_DENIED", "access denied (check AWS_ACCESS_KEY_ID and "
                                          "AWS_SECRET_ACCESS_KEY)"),
                        ("INVALID_ACCESS_KEY_ID", "the access key is not known (check "
                                                  "AWS_ACCESS_KEY_ID)"),
                        ("SIGNATURE_DOES_NOT_MATCH", "the secret key is wrong (check "
                                                     "AWS_SECRET_ACCESS_KEY)"),
                        ("NETWORK_CONNECTION", "the endpoint does not answer (check "
                                               "AWS_ENDPOINT_URL)")):
        if name in text:
            return f"{words}; {text[:160]}"
    return text[:240]


def check_writable(location: str) -> None:
    """Check that a study location can be written, leaving nothing behind: a local folder (its
    nearest existing ancestor when it does not exist yet) gets a probe file created and
    removed; so does a URI's folder (`check_store`). ``ValueError`` of one line otherwise."""
    if is_uri(location):
        check_store(location)
        return
    folder = Path(local_path(location))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"study.storage={location!r} is not writable: {folder} is not a folder")
    probe = folder / f".gmmpvae-probe-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(one_line(f"study.storage={location!r} is not writable: "
                                  f"{exc.strerror or exc} ({folder})")) from None


@dataclass(frozen=True)
class StudyFolder:
    """A study folder: ``location`` as the spec stores it, and its filesystem and root path."""

    location: str
    fs: pafs.FileSystem
    root: str

    @classmethod
    def open(cls, location: str) -> StudyFolder:
        """Resolve ``location`` (``ValueError`` of one line for a URI pyarrow cannot open)."""
        fs, root = filesystem(location)
        return cls(str(location), fs, root)

    @classmethod
    def of(cls, where: StudyFolder | str) -> StudyFolder:
        """``where`` itself when it is an open folder, else the folder at that location."""
        return where if isinstance(where, StudyFolder) else cls.open(where)

    @property
    def is_remote(self) -> bool:
        """Whether the folder is on a remote filesystem (a URI, no shared POSIX file system)."""
        return is_uri(self.location)

    def waiting_out(self, grace: float, announce: Callable[[str], None] = log_warning
                    ) -> StudyFolder:
        """The folder whose every store call waits out an outage of the object store for at
        most ``grace`` seconds (``[failure] outage_grace``), then raises `study.errors.
        Unreachable` naming it (`study.store.outage.patient_filesystem`); a local folder as
        it is."""
        if not self.is_remote:
            return self
        fs = patient_filesystem(self.fs, store_name(self.location), grace, announce)
        return StudyFolder(self.location, fs, self.root)

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` inside the folder."""
        return join(self.root, *parts)

    def exists(self, *parts: str) -> bool:
        return exists(self.fs, self.path(*parts))

    def trial_dir(self, key: str) -> str:
        """The filesystem path of the trial ``key``'s folder (``STUDY/trials/<key>``)."""
        return self.path(TRIALS_DIR, key)
