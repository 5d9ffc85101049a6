"""What a run (or resume) did: `Outcome`, built by `study.run`, printed by `study.summary`."""

from __future__ import annotations

from dataclasses import dataclass, field

from study.spec import StudySpec
from study.store import Consolidated


@dataclass
class Outcome:
    """What a run (or resume) did."""

    study_dir: str
    consolidated: Consolidated
    slots: int
    max_concurrent: int
    observed_concurrency: int
    seconds: float
    optuna: dict[str, int] = field(default_factory=dict)
    stranded: bool = False  # ended because no node could hold a trial (resumable)
    spec: StudySpec | None = field(default=None, repr=False)  # the spec it ran (resume: as saved)
