"""What the terminal shows while a study runs: the state of its trials and its rendering.

`LiveState` gathers what the trials already report (no extra work in any trial): per running
trial its epoch, its best validation loss and its measured epoch rate; per study the finished,
failed, running and pending counts. `render(state, now)` turns it into lines — a study line
then one line per running trial:

    study quickstart  3 done · 2 running · 7 pending · 0 failed  elapsed 0:01:23  ETA 0:05:10
      m2-k10-… epoch 12/50  best val 98.123  1.84 epochs/s

The ETA assumes every trial runs to ``max_epochs`` at the rates measured now (early stopping
makes it shorter; the final evaluation is not counted): the epochs still to run (running
trials' rest, pending trials' ``max_epochs``, their mean when a pending trial's is unknown)
divided by the sum of the running trials' epoch rates. `Screen` draws the lines in place on a
TTY (ANSI: cursor up, clear to the end of the screen; lines cut to the terminal's width so
none wraps) or prints them as a plain block every ``interval`` seconds otherwise
(``$GMMPVAE_PROGRESS_INTERVAL``, default 30). Nothing here
imports Ray: `study.tune.live` feeds it from Tune's callback.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import IO

RATE_WINDOW = 20  # results kept per trial for its epoch rate
INTERVAL_ENV = "GMMPVAE_PROGRESS_INTERVAL"


@dataclass
class TrialLive:
    key: str
    max_epochs: int
    epoch: int = 0
    best: float | None = None
    seconds: float | None = None  # the last epoch's own duration (a rate before two results)
    seen: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))

    def rate(self) -> float | None:
        """Epochs per second over the last results seen by the driver."""
        if len(self.seen) >= 2:
            (t0, e0), (t1, e1) = self.seen[0], self.seen[-1]
            if t1 > t0 and e1 > e0:
                return (e1 - e0) / (t1 - t0)
        if self.seconds and self.seconds > 0:
            return 1.0 / self.seconds
        return None


@dataclass
class LiveState:
    name: str
    total: int
    started: float
    running: dict[str, TrialLive] = field(default_factory=dict)
    finished: dict[str, str] = field(default_factory=dict)  # key -> COMPLETED/PRUNED/ERROR

    def result(self, key: str, max_epochs: int, epoch: int, best: float | None,
               seconds: float | None, now: float) -> None:
        """An epoch result of a running trial."""
        trial = self.running.get(key)
        if trial is None:
            trial = self.running[key] = TrialLive(key, max_epochs)
        trial.epoch, trial.seconds = epoch, seconds
        if best is not None:
            trial.best = best
        trial.seen.append((now, epoch))
        self.finished.pop(key, None)  # a re-run of an errored trial

    def started_trial(self, key: str, max_epochs: int) -> None:
        self.running.setdefault(key, TrialLive(key, max_epochs))
        self.finished.pop(key, None)

    def ended(self, key: str, state: str) -> None:
        self.running.pop(key, None)
        self.finished[key] = state

    def counts(self) -> dict[str, int]:
        done = sum(1 for s in self.finished.values() if s != "ERROR")
        failed = len(self.finished) - done
        running = len(self.running)
        return {"done": done, "running": running, "failed": failed,
                "pending": max(0, self.total - done - failed - running)}

    def eta(self) -> float | None:
        """Seconds until every trial has run its max_epochs at the measured rates."""
        rates = [r for r in (t.rate() for t in self.running.values()) if r]
        if not rates:
            return None
        known = [t.max_epochs for t in self.running.values()]
        mean_max = sum(known) / len(known)
        left = sum(max(0, t.max_epochs - t.epoch) for t in self.running.values())
        left += self.counts()["pending"] * mean_max
        return left / sum(rates)


def clock(seconds: float | None) -> str:
    """``H:MM:SS`` (``—`` for unknown)."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(state: LiveState, now: float) -> list[str]:
    """The study line, then one line per running trial (in key order)."""
    c = state.counts()
    lines = [f"study {state.name}  {c['done']} done · {c['running']} running · "
             f"{c['pending']} pending · {c['failed']} failed  elapsed "
             f"{clock(now - state.started)}  ETA {clock(state.eta())}"]
    width = max(len(k) for k in state.running) if state.running else 0
    for key in sorted(state.running):
        t = state.running[key]
        best = "—" if t.best is None else f"{t.best:.3f}"
        rate = t.rate()
        speed = "—" if rate is None else f"{rate:.2f}"
        lines.append(f"  {key:<{width}}  epoch {t.epoch}/{t.max_epochs}  best val {best}  "
                     f"{speed} epochs/s")
    return lines


class Screen:
    """Draws a block of lines in place (TTY) or prints it every ``interval`` seconds."""

    def __init__(self, stream: IO[str] | None = None, tty: bool | None = None,
                 interval: float | None = None, refresh: float = 0.5) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        if interval is None:
            interval = float(os.environ.get(INTERVAL_ENV) or 30.0)
        self.every = refresh if self.tty else interval
        self.last: float | None = None
        self.drawn = 0

    def due(self, now: float) -> bool:
        return self.last is None or now - self.last >= self.every

    def show(self, lines: list[str], now: float) -> None:
        self.last = now
        if self.tty:
            width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
            self.clear()
            self.stream.write("".join(line[:width] + "\n" for line in lines))
            self.drawn = len(lines)
        else:
            self.stream.write("".join(line + "\n" for line in lines))
        self.stream.flush()

    def clear(self) -> None:
        """Erase the block drawn last (TTY), so that other lines print where it was."""
        if self.tty and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.flush()
        self.drawn = 0
