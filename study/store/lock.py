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

**An outage of the object store** does not lose the lease silently: a renewal that fails is
retried (`study.patience.patiently`) for at most ``outage_grace`` seconds and never past the
point where a second driver could take the lease over (``lease_seconds`` since the last renewal,
less a margin). Then the renewal stops, tells the driver why (``on_lost(line)``: the driver's
`study.ending.Ending`), and the driver stops its study rather than run on beside a driver that
took over. `lease_for` sizes the lease so that it outlasts ``outage_grace``.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow.fs as pafs

from study.patience import OUTAGE_GRACE, one_line, patiently
from study.store.layout import write_bytes
from study.store.outage import store_name, store_outage

LOCK_FILE = "driver.lock"
LEASE_FILE = "driver.lease"
LEASE_SECONDS = 60.0
SETTLE_SECONDS = 2.0
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


def lease_for(outage_grace: float) -> float:
    """A lease long enough for its renewal to wait out ``outage_grace`` seconds (renewed every
    third of it): at least `LEASE_SECONDS`."""
    return max(LEASE_SECONDS, 1.5 * float(outage_grace) + 30.0)


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
    outage_grace: float = OUTAGE_GRACE
    on_lost: Callable[[str], None] | None = None
    lost: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    renewed: float = field(default_factory=time.monotonic)  # the last renewal, this clock

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
        """Rewrite the lease whole (a rename locally, one upload on an object store): a reader
        never sees it half-written."""
        self.holder["renewed_at"] = time.time()
        write_bytes(self.fs, self.path, (json.dumps(self.holder) + "\n").encode())

    def renew(self) -> None:
        """Rewrite the lease, unless another driver holds it now (`_TakenOver`)."""
        current = self.read()
        if current is not None and current.get("token") != self.holder["token"]:
            raise _TakenOver(f"the study's lease ({self.path}) was taken over by "
                             f"{describe(current)}")
        self.write()
        self.renewed = time.monotonic()

    def grace_left(self) -> float:
        """How long a renewal may wait: at most the outage grace, and never past the moment
        a second driver could take the lease over (less a margin for stopping)."""
        margin = min(self.lease_seconds / 6, 15.0)
        left = self.renewed + self.lease_seconds - margin - time.monotonic()
        return max(0.0, min(self.outage_grace, left))

    def renew_forever(self) -> None:
        while not self.stop.wait(self.lease_seconds / 3):
            try:
                patiently(self.renew, what=store_name(self.location),
                          grace=self.grace_left(), transient=store_outage)
            except Exception as exc:  # gave up, taken over, refused: the lease is not kept
                # (told unless the driver has ended meanwhile)
                if not self.stop.is_set() and self.on_lost is not None:
                    self.on_lost(one_line(exc))
                self.lost.set()
                return


class _TakenOver(RuntimeError):
    """Another driver holds the lease this driver let expire."""


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
                settle_seconds: float, outage_grace: float,
                on_lost: Callable[[str], None] | None) -> Iterator[dict[str, Any]]:
    fs.create_dir(folder, recursive=True)
    lease = _Lease(fs, f"{folder.rstrip('/')}/{LEASE_FILE}", location, lease_seconds,
                   _holder_info(uuid.uuid4().hex, lease_seconds), outage_grace, on_lost)
    current = lease.read()
    if lease_is_live(current):
        raise _refusal(location, current, lease.path)
    lease.write()
    time.sleep(settle_seconds)
    current = lease.read()
    if current is None or current.get("token") != lease.holder["token"]:
        raise _refusal(location, current, lease.path)  # lost the race to another driver
    lease.renewed = time.monotonic()
    thread = threading.Thread(target=lease.renew_forever, name="gmmpvae-lease", daemon=True)
    thread.start()
    try:
        yield lease.holder
    finally:
        lease.stop.set()
        thread.join(timeout=5)
        if not lease.lost.is_set():
            _release(lease)


def _release(lease: _Lease) -> None:
    """Delete our lease as the driver ends; a store that does not answer now leaves it to
    expire (the error that ended the driver, if any, is the one the user sees)."""
    try:
        current = lease.read()
        if current is not None and current.get("token") == lease.holder["token"]:
            lease.fs.delete_file(lease.path)
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def study_lock(fs: pafs.FileSystem, folder: str, location: str, *,
               lease_seconds: float = LEASE_SECONDS, settle_seconds: float = SETTLE_SECONDS,
               force_lease: bool = False, outage_grace: float = OUTAGE_GRACE,
               on_lost: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Hold the study at ``folder`` on ``fs`` (``location`` is how the user named it) for the
    duration of the block; yields the holder's record. Raises `StudyLockedError` when another
    live driver holds it. ``force_lease`` uses the lease on a local folder (tests). A lease's
    renewal waits out an outage of the store for at most ``outage_grace`` seconds; a lease that
    could not be kept is told to ``on_lost(line)``, once, while the block runs."""
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
                _lease_lock(fs, folder, location, lease_seconds, settle_seconds,
                            outage_grace, on_lost))
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
