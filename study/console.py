"""The driver's lines to the user, in one place: ``study NAME: …`` for what a study does
(`say`) and ``gmmpvae: warning: …`` on stderr for what the user should know but need not act
on (`warn`). Per-trial lines and the live view are `study.tune.callback` and
`study.watch.live_view`; errors are `study.errors` (one line, exit status 2)."""

from __future__ import annotations

import sys


def say(study: str, text: str) -> None:
    """One line about study ``study`` on stdout, flushed (logs of long studies stay current)."""
    print(f"study {study}: {text}", flush=True)


def warn(text: str) -> None:
    """One warning line on stderr."""
    print(f"gmmpvae: warning: {text}", file=sys.stderr, flush=True)
