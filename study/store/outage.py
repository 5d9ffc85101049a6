"""An object store that stops answering for a while: which of its errors are an outage
(`store_outage`), a client whose single calls end within seconds when the server hangs
(`bounded`), and a filesystem whose every call waits out an outage for at most the study's
``[failure] outage_grace`` (`patient_filesystem`). Nothing here imports Ray.

- `store_outage(exc)`: pyarrow's S3 errors that an outage makes (``NETWORK_CONNECTION``: a refused
  connection, a timeout; throttling, ``SLOW_DOWN``, 5xx) — not wrong keys, a missing bucket or
  key, which waiting does not mend.
- `bounded(fs)`: pyarrow's ``FileSystem.from_uri`` gives an S3 client that retries a hanging
  request ten times (measured: about 99 s per call against a frozen SeaweedFS). The same
  client with the SDK's standard retries, twice (about 6 s per call), so that the patience is
  ours and bounded by the grace period. It is the same endpoint (``AWS_ENDPOINT_URL_S3`` or
  ``AWS_ENDPOINT_URL``, as ``from_uri`` reads it), region and credentials (the environment's);
  a URI with options of its own (``?…``, keys in it) keeps ``from_uri``'s client. Its writes
  are not in the background (``background_writes=False``): a file is uploaded by the thread
  that closes it. With background writes, closing a file queues its upload to pyarrow's I/O
  thread pool and waits; `pyarrow.fs.copy_files` (Tune's experiment sync) closes its files
  *on* that pool, so eight files at once (the pool's size) waited for uploads that no thread
  was left to run: a resumed study on S3 hung for good (measured; test_store).
- `patient_filesystem(fs, …)`: ``pafs.PyFileSystem`` (pyarrow's public way to wrap a
  filesystem) whose calls go through the study's one patience (`study.patience.Patience`,
  shared by the process); a file is read whole and written whole (one upload on close, retried
  as a whole), so a retried call never resumes half a transfer. The first wait of an outage is
  announced once per process (``announce``), and its end too. The grace is the outage's, not
  each call's: once an outage has lasted ``grace`` seconds for a process, its later calls try
  once and give up. It pickles (Ray ships it to the trials inside Tune's storage settings).
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from study.console import warn
from study.patience import Patience

T = TypeVar("T")
_log = logging.getLogger(__name__)

SDK_ATTEMPTS = 2  # the S3 client's own attempts per call (`bounded`)
# Words of pyarrow's S3 errors (``AWS Error NAME during Operation: …``).
_TRANSIENT = re.compile(
    r"NETWORK_CONNECTION|REQUEST_TIMEOUT|SLOW_DOWN|SlowDown|THROTTL|Throttl|SERVICE_UNAVAILABLE"
    r"|INTERNAL_FAILURE|InternalError|curlCode: (?:6|7|28|52|55|56)\b|Timeout was reached"
    r"|timed out|Connection refused|Could not connect|Connection reset"
    r"|HTTP (?:status|response code):? 5\d\d|\(HTTP status 5\d\d\)")
_PERMANENT = re.compile(
    r"ACCESS_DENIED|AccessDenied|INVALID_ACCESS_KEY_ID|SIGNATURE_DOES_NOT_MATCH|NO_SUCH_BUCKET"
    r"|NoSuchBucket|NO_SUCH_KEY|NoSuchKey|RESOURCE_NOT_FOUND|does not exist")


def store_outage(exc: BaseException) -> bool:
    """Whether an object store's error may mend by waiting (an outage, throttling)."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError |
                  NotADirectoryError | FileExistsError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if not isinstance(exc, OSError):
        return False
    text = " ".join(str(exc).split())
    return not _PERMANENT.search(text) and bool(_TRANSIENT.search(text))


def bounded(fs: pafs.FileSystem, location: str) -> pafs.FileSystem:
    """``fs`` (``from_uri``'s client of ``location``) with single calls bounded: see the
    module docstring. Anything but a plain ``s3://bucket/…`` URI is returned as it is."""
    parts = urlsplit(str(location))
    if not isinstance(fs, pafs.S3FileSystem) or parts.query or "@" in parts.netloc:
        return fs
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return pafs.S3FileSystem(
        region=fs.region, endpoint_override=endpoint or None,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=SDK_ATTEMPTS),
        background_writes=False)  # see the module docstring: no upload queued to the I/O pool


def log_warning(text: str) -> None:
    """The default announcement of an outage (a trial's log)."""
    _log.warning("%s", text)


class DriverWarning:
    """An announcement for a filesystem that travels (Tune's storage settings go to every
    trial): a ``gmmpvae: warning:`` line in the driver's process that made it, the log in
    any other (the trials' lines would repeat the driver's)."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def __call__(self, text: str) -> None:
        (warn if os.getpid() == self.pid else log_warning)(text)


class _Upload(io.BytesIO):
    """A file being written: kept in memory, uploaded whole (patiently) when closed."""

    def __init__(self, handler: PatientHandler, path: str, metadata: Any) -> None:
        super().__init__()
        self._handler, self._path, self._metadata = handler, path, metadata

    def close(self) -> None:
        if self.closed:
            return
        data = self.getvalue()
        super().close()
        self._handler.call(lambda: self._put(data))

    def _put(self, data: bytes) -> None:
        fs = self._handler.fs
        with fs.open_output_stream(self._path, metadata=self._metadata) as out:
            out.write(data)


class PatientHandler(pafs.FileSystemHandler):
    """The handler of `patient_filesystem`'s ``PyFileSystem``: every call of ``fs`` through
    ``patience`` (`study.patience.Patience`)."""

    def __init__(self, fs: pafs.FileSystem, patience: Patience) -> None:
        self.fs, self.patience = fs, patience

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, patiently: for what is left of the grace of the outage in course (one
        wait per outage and process, not one per call: a driver or trial whose calls follow
        one another gives up ``grace`` seconds after the outage began for it)."""
        return self.patience.call(fn)

    # pafs.FileSystemHandler
    def get_type_name(self) -> str:
        return f"patient-{self.fs.type_name}"

    def equals(self, other: Any) -> bool:
        return isinstance(other, PatientHandler) and other.fs.equals(self.fs)

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.call(lambda: self.fs.get_file_info(paths))

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.call(lambda: self.fs.get_file_info(selector))

    def create_dir(self, path: str, recursive: bool) -> None:
        self.call(lambda: self.fs.create_dir(path, recursive=recursive))

    def delete_dir(self, path: str) -> None:
        self.call(lambda: self.fs.delete_dir(path))

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.call(lambda: self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok))

    def delete_root_dir_contents(self) -> None:
        self.call(lambda: self.fs.delete_dir_contents("/", accept_root_dir=True))

    def delete_file(self, path: str) -> None:
        self.call(lambda: self.fs.delete_file(path))

    def move(self, src: str, dest: str) -> None:
        self.call(lambda: self.fs.move(src, dest))

    def copy_file(self, src: str, dest: str) -> None:
        self.call(lambda: self.fs.copy_file(src, dest))

    def _read(self, path: str) -> pa.BufferReader:
        def read() -> bytes:
            with self.fs.open_input_stream(path) as f:
                return f.read()

        return pa.BufferReader(self.call(read))

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self._read(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self._read(path)

    def open_output_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        return pa.PythonFile(_Upload(self, path, metadata), mode="w")

    def open_append_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        raise pa.ArrowNotImplementedError("appending is not offered by object stores")


def patient_filesystem(fs: pafs.FileSystem, what: str, grace: float,
                       announce: Callable[[str], None] = log_warning) -> pafs.FileSystem:
    """``fs`` with every call waiting out an outage for at most ``grace`` seconds, then
    `Unreachable` naming ``what`` (see the module docstring)."""
    patience = Patience(what, grace, store_outage, announce, shared=True)
    return pafs.PyFileSystem(PatientHandler(fs, patience))


def store_name(location: str) -> str:
    """How an outage line names a study's store: 'the object store of s3://studies/q'."""
    return f"the object store of {location}"

