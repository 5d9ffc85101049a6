"""Logging helpers shared by the rooms of `study` (Ray-free, so `study.watch` can use them):
`quiet_loggers`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator


@contextlib.contextmanager
def quiet_loggers(names: Iterable[str], level: int) -> Iterator[None]:
    """The named loggers show only records of ``level`` and above for the block (a library's
    INFO lines or expected warnings), then get their own levels back."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, levels, strict=True):
            lg.setLevel(old)
