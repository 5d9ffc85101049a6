"""A study, validated: the frozen `StudySpec` (data and validation only) and `from_raw`.

`from_raw` validates the nested dict of a study file (`study.spec.study_file` reads files,
presets and command-line overrides; `study.spec.sections` checks each section) before any
trial starts, then builds every planned trial (grids) or a few sampled ones (open spaces) as a
``TrialConfig`` (`_check_trials`), so that a bad combination fails now, not in the hundredth
trial; the grid axes of ``[search.grid]`` are the search space's (`search_spaces.grids`).
``StudySpec.to_dict()`` / ``from_dict()`` round-trip the resolved spec (saved as
``study.json`` in the study folder for ``resume``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

import optuna

import search_spaces
from search_spaces import KEY_FIELD, trial_key
from study.spec.sections import (
    RDB_RE,
    ClaimsSection,
    Context,
    DataSection,
    FailureSection,
    ResourcesSection,
    SchedulerSection,
    SearchSection,
    StudySection,
    parse,
)
from study.store.layout import OPTUNA_JOURNAL, STUDY_FILE
from study.watch.tracking import TrackingSection


@dataclass(frozen=True)
class StudySpec:
    """A validated study: what to run (``plan`` / ``suggest``), where, and with what."""

    study: StudySection
    data: DataSection
    search: SearchSection
    model: dict[str, Any]
    budget: dict[str, Any]
    scheduler: SchedulerSection
    resources: ResourcesSection
    failure: FailureSection
    tracking: TrackingSection = field(default_factory=TrackingSection)
    claims: ClaimsSection = field(default_factory=ClaimsSection)
    source: str = field(default="", compare=False)

    # -- derived once, when the spec is built (plain attributes: read everywhere)
    name: str = field(init=False, compare=False, repr=False)
    storage: str = field(init=False, compare=False, repr=False)  # local absolute path or URI
    search_space: search_spaces.SearchSpace = field(init=False, compare=False, repr=False)
    is_grid: bool = field(init=False, compare=False, repr=False)
    # An RDB URL, or the path of the Optuna journal file (``optuna.journal`` in the study
    # folder unless the study names one).
    optuna_storage_url: str = field(init=False, compare=False, repr=False)
    optuna_storage_is_journal: bool = field(init=False, compare=False, repr=False)
    # The Optuna study's name: the study's, or an extension step's (`study.spec.step`).
    optuna_name: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        url = self.study.optuna_storage
        if url is None:
            url = os.path.join(self.study.storage, OPTUNA_JOURNAL)
        space = search_spaces.get(self.search.space)
        for name, value in (("name", self.study.name), ("storage", self.study.storage),
                            ("search_space", space), ("is_grid", space.kind == "grid"),
                            ("optuna_storage_url", url), ("optuna_name", self.study.name),
                            ("optuna_storage_is_journal", not RDB_RE.match(url))):
            object.__setattr__(self, name, value)  # a frozen dataclass sets its own fields

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as TOML-like nested plain data (JSON-safe), for ``study.json``."""
        return {
            "study": vars(self.study).copy(),
            "data": vars(self.data).copy(),
            "search": {**vars(self.search), "grid": json.loads(json.dumps(self.search.grid))},
            "model": json.loads(json.dumps(self.model)),
            "budget": dict(self.budget),
            "scheduler": vars(self.scheduler).copy(),
            "resources": vars(self.resources).copy(),
            "failure": vars(self.failure).copy(),
            "tracking": self.tracking.to_dict(),
            "claims": vars(self.claims).copy(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = STUDY_FILE) -> StudySpec:
        """Rebuild (and re-validate) a spec saved with ``to_dict``."""
        return from_raw(data, origin)

    # -- trials
    def fixed_trial_fields(self) -> dict[str, Any]:
        """The flat fields every trial gets: dataset and data_dir ([data]), [budget], [model]."""
        fixed: dict[str, Any] = {}
        if self.data.dataset is not None:
            fixed["dataset"] = self.data.dataset
        if self.data.data_dir is not None:
            fixed["data_dir"] = self.data.data_dir
        fixed.update(self.budget)
        fixed.update(json.loads(json.dumps(self.model)))
        return fixed

    def plan(self) -> list[dict[str, Any]] | None:
        """Every trial of a grid study in order: a complete flat config plus its ``trial_key``;
        None for open searches (their trials come from ``suggest``)."""
        if not self.is_grid:
            return None
        configs = self.search_space.enumerate(
            self.fixed_trial_fields(), self.search.seeds, self.search.grid
        )
        return [{**c, KEY_FIELD: trial_key(c)} for c in configs]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One trial of an open search, chosen define-by-run with an Optuna ``trial``: the
        complete flat config plus its ``trial_key``."""
        config = self.search_space.suggest(trial, self.fixed_trial_fields())
        return {**config, KEY_FIELD: trial_key(config)}


def from_raw(raw: dict[str, Any], origin: str, overridden: set[str] | None = None,
             default_name: str | None = None) -> StudySpec:
    """Validate the nested dict of a study file and build the spec (trials included); a
    problem is one ``ValueError`` line naming ``origin`` (or "command line" for a field in
    ``overridden``), the field, the value and what is accepted."""
    ctx, sections = parse(raw, origin, overridden, default_name)
    return _check_trials(StudySpec(**sections, source=ctx.origin), ctx)


def _check_trials(spec: StudySpec, ctx: Context) -> StudySpec:
    """Build every planned trial (grids) or a few sampled ones (open spaces) as a TrialConfig,
    so that a bad combination fails now, not in the hundredth trial."""
    if spec.is_grid:
        try:
            plan = spec.plan() or []
        except ValueError as exc:
            raise ctx.qualify(exc) from None
        keys = [t[KEY_FIELD] for t in plan]
        if len(set(keys)) != len(keys):
            raise ctx.error(f"search.grid={spec.search.grid!r} gives the same configuration "
                            f"twice: expected distinct values in every list", "search.grid")
        given = spec.search.num_samples
        if given and given != len(plan):
            raise ctx.bad("search.num_samples", given, f"{len(plan)} (the size of the grid "
                          f"'{spec.search.space}') or nothing")
        search = SearchSection(**{**vars(spec.search), "num_samples": len(plan)})
        return dataclasses.replace(spec, search=search)
    # A handful of sampled trials checks the open space with the fixed fields.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(8):
            trial = probe.ask()
            spec.suggest(trial)
            probe.tell(trial, 0.0)
    except ValueError as exc:
        raise ctx.qualify(exc) from None
    finally:
        optuna.logging.set_verbosity(verbosity)
    return spec
