"""Patience with a server that does not answer: `patiently` retries a call with backoff for at
most a grace period (``[failure] outage_grace``), then raises `study.errors.Unreachable` (one
line, exit status 3, the study resumable).

A study on an object store, or with its Optuna study in a database, lives as long as those
servers answer. A restart of PostgreSQL, a minute of a throttled or partitioned S3 endpoint:
neither should cost a trial or the driver. Whether an error is worth waiting for is the caller's
to say (``transient``: the object store's and the database's words differ); anything else is
raised at once, as it came. The waits grow (1 s, 2 s, 4 s … at most ``max_wait``) with jitter,
so that eight trials that lost the store together do not hammer it together when it returns.
Ray-free and server-free: the clock and the sleep are arguments, so the tests need no server.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

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
              max_wait: float = MAX_WAIT, since: float | None = None) -> T:
    """``call()``; while it raises an error that ``transient`` accepts, call it again after a
    growing wait, for at most ``grace`` seconds in all. Then `Unreachable`: "``what`` did not
    answer for N s (last error: …)". ``on_wait(error, seconds)`` is told before each wait (a
    driver's warning line, a log). ``since``: when the outage began (``clock`` time), if
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
                                  f"(last error: {_first_line(exc)})") from exc
            pause = min(wait * random.uniform(0.5, 1.0), max_wait, grace - waited)
            if on_wait is not None:
                on_wait(exc, pause)
            sleep(pause)
            wait = min(wait * 2, max_wait)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
