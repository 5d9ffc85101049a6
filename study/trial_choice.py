"""What a study runs next, decided without I/O: `TrialChoice` — the plan, the keys to run again
and the orphans in; the next trial out (`Next`). Ray-free, Optuna-free, server-free: the
searcher (`study.tune.searcher`) feeds it what `study.optuna_trials.OptunaTrials` read, and
does what it says.

In this order, each `next`:

1. **an orphan** — an Optuna trial left RUNNING by no Tune trial of this driver (asked by a
   driver that died before Tune saved its state, or by an ``ask`` of ours cut in flight) — is
   adopted with the configuration it was asked for (`Next.number`: told under that number when
   it ends), so no key is lost or run twice;
2. **a key to run again** (its trial record was lost, Optuna calls it COMPLETE): its
   configuration is handed out once, *outside* Optuna (nothing is asked or told for it: Optuna
   cannot change a finished trial, and a second COMPLETE trial would count the key twice);
3. **a grid** asks the next waiting (enqueued) trial while its count of them lasts — known from
   one read at the start (`saw`), minus its asks, not from a read per call — then FINISHED;
   **an open space** draws a new configuration (the sampler: Optuna's), within its budget.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from search_spaces import KEY_FIELD

ADOPT, RERUN, ASK, DRAW, FINISHED = "adopt", "rerun", "ask", "draw", "finished"


@dataclass(frozen=True)
class Next:
    """The next trial: ``kind`` (`ADOPT`, `RERUN`: run ``config``; `ASK`: ask Optuna's next
    waiting grid trial; `DRAW`: draw an open space's next configuration; `FINISHED`), and for
    `ADOPT` the orphan's Optuna trial ``number``."""

    kind: str
    config: dict[str, Any] | None = None
    number: int | None = None


class TrialChoice:
    """The decider of a study's trials (see the module docstring). ``plan``: a grid's planned
    trials (flat configs with their ``trial_key``), None for an open space; ``reruns``:
    trial_key → the configuration to run again (None: not known any more, skipped)."""

    def __init__(self, plan: list[dict[str, Any]] | None,
                 reruns: dict[str, dict[str, Any] | None] | None = None) -> None:
        self.plan = None if plan is None else {t[KEY_FIELD]: t for t in plan}
        self.reruns = dict(reruns or {})
        self.served: set[str] = set()  # the reruns handed out (saved with Tune's state)
        self._orphans: list[tuple[int, dict[str, Any]]] = []
        self._waiting = 0

    def planned(self, key: Any) -> dict[str, Any] | None:
        """A copy of the planned configuration of ``key`` (None: not a planned key)."""
        if self.plan is None or key not in self.plan:
            return None
        return dict(self.plan[key])

    def saw(self, orphans: Iterable[tuple[int, dict[str, Any]]], waiting: int) -> None:
        """What one read of the unfinished trials found: the orphans (number, configuration)
        and how many trials wait (a grid's enqueued ones)."""
        self._orphans, self._waiting = list(orphans), int(waiting)

    def owned(self, numbers: Iterable[int]) -> None:
        """These Optuna trials have their Tune trials again (a restored experiment): no
        orphans of ours."""
        taken = set(numbers)
        self._orphans = [(n, c) for n, c in self._orphans if n not in taken]

    def next(self) -> Next:
        """The next trial to run (see the module docstring)."""
        if self._orphans:
            number, config = self._orphans.pop(0)
            return Next(ADOPT, config, number)
        for key in sorted(self.reruns.keys() - self.served):
            self.served.add(key)
            config = self.reruns[key]
            if config is not None:
                return Next(RERUN, dict(config))
        if self.plan is None:
            return Next(DRAW)
        if self._waiting <= 0:
            return Next(FINISHED)
        self._waiting -= 1
        return Next(ASK)
