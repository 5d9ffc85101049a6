"""One step of ``gmmpvae extend`` as a spec the study's route runs: `step_spec` (docs/BUDGETS.md).

An extension step runs its trials — every configuration brought to one budget — through the
same route as a run (`study.tune.engine.run`: the searcher, the Tuner, the trainable). The
route reads what to run from a spec, so a step is the study's spec with:

- ``plan()``: the step's trials (continued, fresh and carried, the carried ones already
  finished in Optuna so the searcher never asks them), a continued trial's row naming its
  source under `SOURCE_KEY` (the trainable starts it from that trial's last checkpoint);
- ``optuna_name``: the step's own Optuna study in the study's storage (Optuna cannot widen a
  categorical parameter's choices in a study, so new seeds or budgets cannot join the first);
- the FIFO scheduler (a scheduler's rungs, meant for trials that start at epoch 1, would prune
  continuations and leave a configuration without a result at the budget), and
  ``num_samples``: the step's trials to run.

``to_dict()`` is the study's own spec plus the step (`STEP_KEY`), and `from_dict` rebuilds
either: Tune pickles the searcher's recipe (``spec.to_dict()``) into its experiment, and a
restored step must plan the step again, not the study's grid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from search_spaces import KEY_FIELD
from study.spec.study_spec import StudySpec

STEP_KEY = "extend_step"  # the step in a step spec's to_dict()
SOURCE_KEY = "_continued_from"  # a continued trial's source key in its plan row / Tune config


@dataclass(frozen=True)
class StepSpec(StudySpec):
    """The study's spec running one extension step (module doc). ``base``: the study's own
    spec; ``step_name``: the step's Optuna study; ``trials``: the step's plan rows."""

    base: StudySpec | None = field(default=None, compare=False, repr=False)
    step_name: str = ""
    trials: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "optuna_name", self.step_name)

    def plan(self) -> list[dict[str, Any]]:
        return [dict(t) for t in self.trials]

    def to_dict(self) -> dict[str, Any]:
        assert self.base is not None
        return {**self.base.to_dict(),
                STEP_KEY: {"name": self.step_name, "trials": [dict(t) for t in self.trials]}}


def from_dict(data: dict[str, Any]) -> StudySpec:
    """A spec saved with ``to_dict``: the study's (`StudySpec.from_dict`), or a step's."""
    data = dict(data)
    saved = data.pop(STEP_KEY, None)
    spec = StudySpec.from_dict(data)
    return spec if saved is None else step_spec(spec, saved["name"], saved["trials"])


def step_spec(spec: StudySpec, name: str, trials: Sequence[dict[str, Any]]) -> StepSpec:
    """``spec`` running the step ``name`` whose plan rows are ``trials`` (flat configs with
    their ``trial_key``; a continued one with its source under `SOURCE_KEY`). Tune's
    ``num_samples`` is the step's size: the searcher finishes once nothing waits in the step's
    Optuna study (the carried trials are finished there before it starts)."""
    rows = tuple(dict(t) for t in trials)
    keys = [t[KEY_FIELD] for t in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"extension step {name} plans a trial_key twice")
    search = dataclasses.replace(spec.search, num_samples=max(1, len(rows)))
    scheduler = dataclasses.replace(spec.scheduler, kind="fifo")
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(StudySpec) if f.init}
    return StepSpec(**{**fields, "search": search, "scheduler": scheduler}, base=spec,
                    step_name=name, trials=rows)
