"""One live driver per study folder: `study_lock` (taken by ``run`` and ``resume``, never by
``status`` or ``report``, which only read).

Two mechanisms, chosen by where the study lives:

- **A local or mounted folder** (also NFS): an OS lock (``flock``) on ``STUDY/driver.lock``,
  held by an open file for the driver's lifetime. The kernel releases it when the driver dies,
  however it dies, so a lock left by a dead driver is simply free; the file's content (host,
  PID, command, start time) only names the holder in the refusal. Linux NFS clients emulate
  ``flock`` with POSIX byte-range locks, so drivers on two nodes exclude each other too. A
  file system that offers no locks at all (``ENOLCK``/``EOPNOTSUPP``: some FUSE mounts) falls
  back to the lease below.
- **An object store URI** (``s3://``, ``gs://``: no locks): a lease, ``STUDY/driver.lease``,
  a JSON object the driver rewrites every ``lease_seconds / 3`` from a daemon thread. A second
  driver respects a lease renewed less than ``lease_seconds`` ago; it takes over an expired one,
  or one whose holder is a dead PID on its own host. Object stores have no create-if-absent
  here, so acquiring writes the lease, waits ``settle_seconds`` and reads it back: two drivers
  that raced both read the last writer's token and only that one proceeds. Expiry compares the
  holder's clock with the reader's: keep hosts' clocks within a small fraction of the lease.

A refusal is one line naming the holder (`StudyLockedError`). Nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow.fs as pafs

LOCK_FILE = "driver.lock"
LEASE_FILE = "driver.lease"
LEASE_SECONDS = 60.0
SETTLE_SECONDS = 2.0
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class StudyLockedError(RuntimeError):
    """Another live driver holds the study; the message is one line naming it."""


def _holder_info(token: str, lease_seconds: float | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])[:200],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "token": token,
    }
    if lease_seconds is not None:
        info["lease_seconds"] = lease_seconds
        info["renewed_at"] = time.time()
    return info


def describe(holder: dict[str, Any] | None) -> str:
    """'pid 123 on host-a since 2026-11-29T10:00:00+00:00 (gmmpvae run quickstart)'."""
    if not holder:
        return "another process (its details could not be read)"
    text = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    if holder.get("started_at"):
        text += f" since {holder['started_at']}"
    if holder.get("command"):
        text += f" ({holder['command']})"
    return text


def _refusal(location: str, holder: dict[str, Any] | None, where: str) -> StudyLockedError:
    return StudyLockedError(
        f"study {location} is already being run by {describe(holder)} (lock {where}); "
        "wait for it to finish or stop it, then `gmmpvae resume` it")


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        holder = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


# ----------------------------------------------------------------------------------------------
# OS lock (local and mounted folders)


@contextlib.contextmanager
def _os_lock(folder: str, location: str) -> Iterator[dict[str, Any]]:
    path = os.path.join(folder, LOCK_FILE)
    os.makedirs(folder, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(location, _parse(os.pread(fd, 65536, 0)), path) from None
        holder = _holder_info(uuid.uuid4().hex)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)  # released: nobody to name
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _os_holder(folder: str) -> dict[str, Any] | None:
    path = os.path.join(folder, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(os.pread(fd, 65536, 0)) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)  # free: nobody holds the study
        return None
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# Lease (object stores)


@dataclass
class _Lease:
    fs: pafs.FileSystem
    path: str
    location: str
    lease_seconds: float
    holder: dict[str, Any]
    lost: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def read(self) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self.path) as f:
                return _parse(f.read())
        except FileNotFoundError:
            return None
        except OSError:  # object stores name a missing key in their own words
            if self.fs.get_file_info(self.path).type == pafs.FileType.NotFound:
                return None
            raise

    def write(self) -> None:
        self.holder["renewed_at"] = time.time()
        with self.fs.open_output_stream(self.path) as out:
            out.write((json.dumps(self.holder) + "\n").encode())

    def renew_forever(self) -> None:
        while not self.stop.wait(self.lease_seconds / 3):
            current = self.read()
            if current is not None and current.get("token") != self.holder["token"]:
                self.lost.set()  # someone took over a lease we let expire: stop renewing
                return
            self.write()


def lease_is_live(holder: dict[str, Any] | None, now: float | None = None) -> bool:
    """Whether a lease read from storage still binds another driver."""
    if not holder:
        return False
    now = time.time() if now is None else now
    try:
        renewed = float(holder["renewed_at"])
        seconds = float(holder.get("lease_seconds", LEASE_SECONDS))
    except (KeyError, TypeError, ValueError):
        return False  # unreadable lease: nobody can renew it
    if renewed + seconds < now:
        return False
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return pid_alive(holder["pid"])
    return True


@contextlib.contextmanager
def _lease_lock(fs: pafs.FileSystem, folder: str, location: str, lease_seconds: float,
                settle_seconds: float) -> Iterator[dict[str, Any]]:
    fs.create_dir(folder, recursive=True)
    lease = _Lease(fs, f"{folder.rstrip('/')}/{LEASE_FILE}", location, lease_seconds,
                   _holder_info(uuid.uuid4().hex, lease_seconds))
    current = lease.read()
    if lease_is_live(current):
        raise _refusal(location, current, lease.path)
    lease.write()
    time.sleep(settle_seconds)
    current = lease.read()
    if current is None or current.get("token") != lease.holder["token"]:
        raise _refusal(location, current, lease.path)  # lost the race to another driver
    thread = threading.Thread(target=lease.renew_forever, name="gmmpvae-lease", daemon=True)
    thread.start()
    try:
        yield lease.holder
    finally:
        lease.stop.set()
        thread.join(timeout=5)
        current = lease.read()
        if current is not None and current.get("token") == lease.holder["token"]:
            fs.delete_file(lease.path)


# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def study_lock(fs: pafs.FileSystem, folder: str, location: str, *,
               lease_seconds: float = LEASE_SECONDS, settle_seconds: float = SETTLE_SECONDS,
               force_lease: bool = False) -> Iterator[dict[str, Any]]:
    """Hold the study at ``folder`` on ``fs`` (``location`` is how the user named it) for the
    duration of the block; yields the holder's record. Raises `StudyLockedError` when another
    live driver holds it. ``force_lease`` uses the lease on a local folder (tests)."""
    with contextlib.ExitStack() as stack:
        holder = None
        if isinstance(fs, pafs.LocalFileSystem) and not force_lease:
            try:
                holder = stack.enter_context(_os_lock(folder, location))
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    raise
        if holder is None:
            holder = stack.enter_context(
                _lease_lock(fs, folder, location, lease_seconds, settle_seconds))
        yield holder


def current_holder(fs: pafs.FileSystem, folder: str) -> dict[str, Any] | None:
    """The live driver holding the study, or None: read-only, takes nothing (for ``status``)."""
    if isinstance(fs, pafs.LocalFileSystem):
        holder = _os_holder(folder)
        if holder is not None:
            return holder
    lease = _Lease(fs, f"{folder.rstrip('/')}/{LEASE_FILE}", folder, LEASE_SECONDS, {})
    current = lease.read()
    return current if lease_is_live(current) else None
