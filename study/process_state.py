"""The state a process shares between objects that were never handed to each other: the only
module-level mutable state of `study/` (``tests/study/test_process_state.py`` looks for any
other).

Both entries are forced by Ray's process model: Ray rebuilds our objects by unpickling them, so
an object cannot be handed what the process it lands in knows, and looks it up here.

- **The driver's experiment in course** (`driving`, `driven`): Tune pickles a Tuner's searcher,
  stopper and callbacks into ``tuner.pkl``, and a resumed experiment (``gmmpvae resume``) runs
  the unpickled copies, which the driver never constructed. They find this run's `Ending` (why
  the study ended) and its live view's options here; `study.tune.engine.run` sets them around
  ``Tuner.fit``.
- **The outages of each store** (`outage_began`, `outage_begins`, `outage_ends`): the study's
  patient filesystem travels to every trial inside Tune's storage settings and is unpickled
  there, again for each trial a worker runs; the driver holds several too. Every copy in a
  process announces an outage once, and counts its grace from when it began for the process
  (`study.patience.Patience`, ``shared``).

Ray-free; nothing else in `study/` keeps state between calls at module level.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from study.ending import Ending


@dataclass
class Driving:
    """The driver's experiment in course: its `Ending` and its live view's options (``quiet``:
    no view; ``finished``: trial_key → state of the trials finished before this driver;
    ``screen``: where it draws, a `study.watch.live_view.Screen`, default stdout)."""

    ending: Ending = field(default_factory=Ending)
    quiet: bool = True
    finished: dict[str, str] = field(default_factory=dict)
    screen: Any = None


_DRIVING: list[Driving] = []  # the experiment in course (one per driver; a stack for tests)
_OUTAGES: dict[str, float] = {}  # store name → when this process first waited on it
_OUTAGES_LOCK = threading.Lock()


@contextlib.contextmanager
def driving(experiment: Driving) -> Iterator[Driving]:
    """``experiment`` is the driver's experiment in course for the block."""
    _DRIVING.append(experiment)
    try:
        yield experiment
    finally:
        _DRIVING.remove(experiment)


def driven() -> Driving:
    """The driver's experiment in course; outside one (an object used on its own, a test),
    a quiet one whose ending nobody reads."""
    return _DRIVING[-1] if _DRIVING else Driving()


def outage_began(what: str) -> float | None:
    """When this process first waited on ``what`` in the outage in course (monotonic), or
    None when there is none."""
    return _OUTAGES.get(what)


def outage_begins(what: str) -> bool:
    """Note that this process waits on ``what``; whether the outage is new (to announce)."""
    with _OUTAGES_LOCK:
        first = what not in _OUTAGES
        _OUTAGES.setdefault(what, time.monotonic())
    return first


def outage_ends(what: str) -> float | None:
    """``what`` answered: forget its outage; when it began, or None if there was none."""
    if what not in _OUTAGES:
        return None
    with _OUTAGES_LOCK:
        return _OUTAGES.pop(what, None)
