"""The Ray Tune engine of a study: the only package that imports Ray.

- `session`: Ray for one study (embedded on 127.0.0.1, or a cluster joined), Tune kept quiet;
  imports no Ray at the top;
- `cluster`: the driver's calls into Ray (start, join, slots, saved experiment state);
- `tuner`: the Tuner assembled in one place (searcher, scheduler, resources, failures,
  storage), new or restored;
- `trainable`: one trial in a Ray worker; `searcher`: the Tune searcher over the study's
  Optuna study (`study.optuna_study`); `callback`: the driver's progress lines and records of
  trials that could not write their own; `stopper`: ends a study no node can hold a trial of;
  `live`: the live view of the running trials; `trackers`: the logger callback feeding the
  study's experiment trackers (`study.watch`).

**The one lazy import.** Ray reads its loopback switch once, when it is first imported
(`study.tune.session`), so it must not be imported before the session has set its
environment, nor at all by the commands that never run a trial (a dry run, ``status``, which
reads the trials' running markers instead of Tune's state, ``report``, the repair code). So
this package imports none of its modules: ``study.tune.<module>`` is imported on first use of
the attribute (`__getattr__` below), and only `session` (Ray-free at the top) is used before
Ray is set up.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["callback", "cluster", "live", "searcher", "session", "stopper", "trainable",
           "trackers", "tuner"]


def __getattr__(name: str) -> ModuleType:
    """``study.tune.<name>``, imported on first use (the one lazy import of Ray, above)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
