"""A running trial's marker, ``STUDY/trials/<key>/running.json``: what the readers
(``gmmpvae status``) know of a trial that has no record yet, without Ray Tune's state.
Nothing here imports Ray.

The trainable writes the marker when an attempt starts (`start`: ``trial_key``, ``node``,
``attempt``, ``started_at`` of this attempt, ``first_started_at`` of the trial) and rewrites it
after each epoch (`RunningMarker.beat`: ``epoch``, ``best_val_loss`` so far, ``seen_at``);
writing the trial's record (`study.store.records.write_record`) removes it. Every write is
atomic (`study.store.layout.write_bytes`: temp + rename on a disk, one upload on an object
store, where the marker lives beside the record like every file of the trial). A marker is
advisory: failing to write one never fails a trial, and the readers judge it (`judge`):

- a marker no live driver can have written — no driver holds the study, or the one holding it
  started after the marker was last seen (`gmmpvae resume` not yet at that trial) — is, for a
  trial without a record, one that was running when its driver stopped (lost, interrupted,
  out of nodes): `UNFINISHED`. `gmmpvae resume` reads records only, never markers; the trial
  it restarts writes a new marker, its record removes it;
- beside a record a marker counts only while a live driver runs its attempt and that attempt
  started after the record was written (Tune retrying a trial whose failed attempt recorded
  ERROR): `RUNNING`. Otherwise the record wins, as it does for `gmmpvae resume`: a marker left
  by a crash between the two writes, rewritten by a last heartbeat racing the driver's record
  of a pruned trial, or of a retry whose driver stopped.

Times are compared across machines (a node's ``seen_at``, the driver's ``started_at``): keep
hosts' clocks within a few seconds, as for the lease (`study.store.lock`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.fs as pafs

from study.errors import Unreachable
from study.store.layout import join, now_utc, read_json, write_json
from study.store.schemas import RUNNING_FILE

# What a marker says of its trial (not record states: a record has none of these).
RUNNING, UNFINISHED = "RUNNING", "UNFINISHED"
_log = logging.getLogger(__name__)


def _time(value: Any) -> datetime | None:
    """An ISO time of a marker, record or lock holder; None when absent or unreadable."""
    try:
        out = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return out if out.tzinfo else out.replace(tzinfo=UTC)


@dataclass
class RunningMarker:
    """The marker of one attempt of a trial, written by the trainable (see the module
    docstring); a failed write is logged once and the trial goes on."""

    fs: pafs.FileSystem
    trial_dir: str
    content: dict[str, Any]
    failed: bool = field(default=False, repr=False)

    def write(self) -> None:
        self.content["seen_at"] = now_utc().isoformat()
        try:
            write_json(self.fs, join(self.trial_dir, RUNNING_FILE), self.content)
        except (OSError, Unreachable) as exc:  # advisory: an outage does not stop the trial
            if not self.failed:
                _log.warning("the running marker of trial %s cannot be written: %s",
                             self.content["trial_key"], " ".join(str(exc).split())[:200])
            self.failed = True

    def beat(self, metrics: dict[str, Any]) -> None:
        """After an epoch: the epoch, the best validation loss so far, the time."""
        self.content["epoch"] = metrics.get("epoch")
        self.content["best_val_loss"] = metrics.get("best_val_loss")
        self.write()

    def beating(self, callback: Callable[..., None]) -> Callable[..., None]:
        """The trainer's per-epoch ``callback(metrics, …)`` with this marker's heartbeat first
        (before Tune may stop the trial in its report)."""
        def beat_then(metrics: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            self.beat(metrics)
            callback(metrics, *args, **kwargs)

        return beat_then


def start(fs: pafs.FileSystem, trial_dir: str, *, trial_key: str, node: str | None,
          attempt: int, first_started_at: str | None) -> RunningMarker:
    """Write the marker of an attempt that starts now, and return it."""
    marker = RunningMarker(fs, trial_dir, {
        "trial_key": trial_key, "node": node, "attempt": int(attempt),
        "started_at": now_utc().isoformat(),  # to the microsecond: compared with records' end
        "first_started_at": first_started_at, "epoch": None, "best_val_loss": None})
    marker.write()
    return marker


def remove(fs: pafs.FileSystem, trial_dir: str) -> None:
    """Remove a trial's marker (its record has just been written); none there is fine, and a
    marker that cannot be removed is outweighed by the record (`judge`)."""
    try:
        fs.delete_file(join(trial_dir, RUNNING_FILE))
    except OSError:  # FileNotFoundError, or the store's own words for a missing key
        pass


def read(fs: pafs.FileSystem, trial_dir: str) -> dict[str, Any] | None:
    """A trial's marker, or None (none, or one that cannot be read: advisory only)."""
    try:
        marker = read_json(fs, join(trial_dir, RUNNING_FILE))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("trial_key") else None


def judge(marker: dict[str, Any], record: dict[str, Any] | None,
          holder: dict[str, Any] | None) -> str | None:
    """What a marker says of its trial: `RUNNING`, `UNFINISHED` (its driver is gone), or None
    (the record wins). ``holder``: the live driver holding the study (`study.store.lock.
    current_holder`), None when there is none, ``{}`` when it cannot be named."""
    since, seen = _time((holder or {}).get("started_at")), _time(marker.get("seen_at"))
    live = holder is not None and (since is None or seen is None or seen >= since)
    if record is None:
        return RUNNING if live else UNFINISHED
    started, ended = _time(marker.get("started_at")), _time(record.get("ended_at"))
    if started is None or ended is None or started <= ended:
        return None
    return RUNNING if live else None  # a retry; once its driver is gone, the record stands


def describe(marker: dict[str, Any], state: str, now: datetime | None = None) -> str:
    """A few words on a marked trial: 'attempt 2 on host/10.0.0.1, started 2026-12-02 10:01:02
    UTC, last seen 2026-12-02 10:03:04 UTC (42 s ago)'."""
    now = now or now_utc()
    words = [f"attempt {marker.get('attempt', '?')} on {marker.get('node') or '?'}"]
    started, seen = _time(marker.get("started_at")), _time(marker.get("seen_at"))
    if started is not None:
        words.append(f"started {_stamp(started)}")
    if seen is not None:
        words.append(f"last seen {_stamp(seen)} ({ago(now - seen)})")
    text = ", ".join(words)
    return f"driver gone; {text}" if state == UNFINISHED else text


def last_seen(markers: list[dict[str, Any]]) -> str | None:
    """The latest ``seen_at`` of these markers, as status prints it."""
    seen = [t for t in (_time(m.get("seen_at")) for m in markers) if t is not None]
    return _stamp(max(seen)) if seen else None


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(delta: timedelta) -> str:
    """'42 s ago', '5 min ago', '3 h ago', '2 d ago' ('just now' for a clock a little ahead)."""
    seconds = delta.total_seconds()
    if seconds < 1:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"
