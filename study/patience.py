"""Patience with a server that does not answer — the one way a study waits out an outage of
its object store or its Optuna database for ``[failure] outage_grace`` seconds, then raises
`study.errors.Unreachable` (one line, exit status 3, the study resumable).

A study on an object store, or with its Optuna study in a database, lives as long as those
servers answer. A restart of PostgreSQL, a minute of a throttled or partitioned S3 endpoint:
neither should cost a trial or the driver.

- `patiently(call, …)`: the loop. While ``call()`` raises an error that ``transient`` accepts,
  call it again after a growing wait (1 s, 2 s, 4 s … at most ``max_wait``, with jitter, so
  that eight trials that lost the store together do not hammer it together when it returns),
  for at most the grace; anything else is raised at once, as it came.
- `Patience`: one server's outages, waited out with `patiently`: its first wait announced once
  (``announce``) and its end too; with ``shared`` (a filesystem: Ray ships copies of it to the
  trials by pickling), the outage is the process's — every copy in a process announces it
  once, and its grace counts from when it began for the process (`study.process_state`).
- Whether an error is an outage is the server's to say: `study.store.outage.store_outage` (the
  object store's words), `study.optuna_outage.database_outage` (the database's exceptions).
- `one_line(exc)`: an error in its server's own words (or any text), on one line — the one
  such function of `study/` (`study.store.one_line` is it too).

Ray-free and server-free: the clock and the sleep are arguments, so the tests need no server.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from study import process_state
from study.errors import Unreachable

T = TypeVar("T")

OUTAGE_GRACE = 120.0  # seconds: the default of ``[failure] outage_grace``
FIRST_WAIT = 1.0  # seconds before the first retry
MAX_WAIT = 16.0  # the longest single wait


def patiently(call: Callable[[], T], *, what: str, grace: float,
              transient: Callable[[BaseException], bool],
              on_wait: Callable[[BaseException, float], None] | None = None,
              sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.monotonic,
              max_wait: float = MAX_WAIT, since: float | None = None,
              hint: str | None = None) -> T:
    """``call()``; while it raises an error that ``transient`` accepts, call it again after a
    growing wait, for at most ``grace`` seconds in all. Then `Unreachable`: "``what`` did not
    answer for N s (last error: …)" (and ``hint``: how to continue). ``on_wait(error,
    seconds)`` is told before each wait. ``since``: when the outage began (``clock`` time), if
    earlier calls waited on it already: the grace, and the N of the line, count from then."""
    start = clock() if since is None else since
    wait = FIRST_WAIT
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            waited = clock() - start
            if waited >= grace:
                raise Unreachable(f"{what} did not answer for {waited:.0f} s "
                                  f"(last error: {one_line(exc, 200)})", hint=hint) from exc
            pause = min(wait * random.uniform(0.5, 1.0), max_wait, grace - waited)
            if on_wait is not None:
                on_wait(exc, pause)
            sleep(pause)
            wait = min(wait * 2, max_wait)


class Patience:
    """Waiting out the outages of one server (``what``: how the lines name it) for ``grace``
    seconds: `call`. ``is_outage(error)``: whether an error says the server is away for now.
    The first wait of an outage is announced (``announce``: "``what`` ``away`` (the error's
    first ``cut`` characters); retrying for up to N s"), and its end ("``what`` answers again
    (after N s)"). ``shared``: the outage is the process's, not this call's (see the module
    docstring). ``hint`` ends the `Unreachable` line (how to continue). It pickles when its
    callables do."""

    def __init__(self, what: str, grace: float, is_outage: Callable[[BaseException], bool],
                 announce: Callable[[str], None], *, shared: bool = False,
                 away: str = "does not answer", cut: int = 160, hint: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.what, self.grace, self.is_outage = what, float(grace), is_outage
        self.announce, self.shared, self.hint, self.sleep = announce, shared, hint, sleep
        self.away, self.cut = away, cut  # the first warning's words, its error's length

    def call(self, fn: Callable[[], T],
             on_wait: Callable[[BaseException], None] | None = None) -> T:
        """``fn()``, retried while the server is away, for what is left of the grace of the
        outage in course (``shared``: the process's; else this call's); ``on_wait(error)`` is
        told before each wait."""
        mine: list[float] = []  # when this call's own outage began (not ``shared``)

        def waiting(exc: BaseException, seconds: float) -> None:
            if self.shared:
                first = process_state.outage_begins(self.what)
            else:
                first = not mine
                mine[:] = mine or [time.monotonic()]
            if first:
                self.announce(f"{self.what} {self.away} ({one_line(exc, self.cut)}); retrying "
                              f"for up to {self.grace:g} s")
            if on_wait is not None:
                on_wait(exc)

        since = process_state.outage_began(self.what) if self.shared else None
        out = patiently(fn, what=self.what, grace=self.grace, transient=self.is_outage,
                        on_wait=waiting, since=since, sleep=self.sleep, hint=self.hint)
        began = process_state.outage_ends(self.what) if self.shared else (
            mine[0] if mine else None)
        if began is not None:
            self.announce(f"{self.what} answers again (after {time.monotonic() - began:.0f} s)")
        return out


def one_line(what: object, limit: int | None = None) -> str:
    """A text, or an error in its server's own words, on one line (of at most ``limit``
    characters): for an error, a database driver's message rather than SQLAlchemy's text (with
    its SQL and link) or Optuna's wrapper around it (``StorageInternalError``, raised ``from``
    the SQLAlchemy error), and its type's name when it says nothing."""
    if not isinstance(what, BaseException):
        text = " ".join(str(what).split())
        return text if limit is None else text[:limit]
    root = what
    optuna = sys.modules.get("optuna")  # (no Optuna error exists before Optuna is imported)
    if optuna is not None and isinstance(root, optuna.exceptions.StorageInternalError) \
            and root.__cause__ is not None:
        root = root.__cause__
    orig = getattr(root, "orig", None)  # SQLAlchemy's DBAPIError: the driver's own error
    if isinstance(orig, BaseException):
        root = orig
    text = " ".join(str(root).split()) or type(root).__name__
    return text if limit is None else text[:limit]
