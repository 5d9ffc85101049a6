"""The ``SearchSpace`` interface, complete trial configurations and their stable keys.

A trial configuration is the flat dict of ``TrialConfig.to_flat()``: every ModelConfig and
TrainConfig field once, under its field name. Spaces return *complete* configurations:
``complete_config`` fills the fields that follow from the dataset (``image_shape``,
``likelihood``) and every default, and validates the result, so a configuration means the
same thing wherever it travels (Ray Tune, Optuna, Parquet).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from models.config import (
    DATASET_MODEL_FIELDS,
    MODEL_FIELDS,
    TRAIN_FIELDS,
    ModelConfig,
    TrainConfig,
    TrialConfig,
)

# Fields that say where or how fast a trial runs, not what it computes: not part of its key.
NON_IDENTITY_FIELDS = frozenset({"device", "data_dir", "eval_memory_mb", "compile"})
# Fields added after the first studies ran: at their default they stay out of the key, so the
# keys of earlier studies (and their resumes) do not change.
KEY_OMITTED_DEFAULTS = {"precision": "fp32"}
# The key of a key: a trial dict from ``StudySpec.plan`` carries it next to the config fields.
KEY_FIELD = "trial_key"
# A trial's budget: in its trial key (one key per configuration and budget), left out of its
# `config_key` (one key per configuration, whatever its budget; docs/BUDGETS.md).
BUDGET_FIELDS = ("max_epochs",)
# K for the standard-prior VAE, which has no pseudo-inputs: one canonical value so that the
# VAE is one configuration; the analysis ignores K where prior = "standard".
VAE_K = 1

_FLOAT_FIELDS = frozenset(
    f.name for f in (*fields(ModelConfig), *fields(TrainConfig)) if f.type in ("float", float)
)
_KEY_DIGITS = 12


def complete_config(flat: dict[str, Any]) -> dict[str, Any]:
    """The complete, validated flat configuration of ``flat`` (a ``trial_key`` entry dropped).

    ``image_shape`` and ``likelihood`` come from the dataset unless given; every other missing
    field takes its ``ModelConfig`` / ``TrainConfig`` default. Raises ``ValueError`` (one line,
    naming the field) on an invalid or unknown field.
    """
    data = {k: v for k, v in flat.items() if k != KEY_FIELD}
    dataset = data.get("dataset", TrainConfig.dataset)
    for name, value in DATASET_MODEL_FIELDS.get(dataset, {}).items():
        data.setdefault(name, value)
    return TrialConfig.from_flat(data).to_flat()


def trial_fields(config: dict[str, Any]) -> dict[str, Any]:
    """Only the ModelConfig / TrainConfig fields of ``config``: drops ``trial_key`` and what a
    searcher adds next to them (Ray Tune's OptunaSearch puts every suggested Optuna parameter,
    such as ``pi_0`` or ``pi_M2``, into the trial's config)."""
    return {k: v for k, v in config.items() if k in MODEL_FIELDS or k in TRAIN_FIELDS}


def _canonical(name: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_canonical(name, v) for v in value]
    if name in _FLOAT_FIELDS or name == "pi" or isinstance(value, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
            if math.isfinite(value):
                return float(f"{value:.{_KEY_DIGITS}g}")
    return value


def canonical_json(flat: dict[str, Any], leave_out: tuple[str, ...] = ()) -> str:
    """The identity of a configuration as text: its complete config without the fields of
    ``NON_IDENTITY_FIELDS`` (and of ``leave_out``), floats rounded to 12 significant digits,
    keys sorted."""
    full = complete_config(flat)
    ident = {k: _canonical(k, v) for k, v in full.items()
             if k not in NON_IDENTITY_FIELDS and k not in leave_out
             and not (k in KEY_OMITTED_DEFAULTS and v == KEY_OMITTED_DEFAULTS[k])}
    return json.dumps(ident, sort_keys=True, separators=(",", ":"), allow_nan=False)


def trial_key(flat: dict[str, Any]) -> str:
    """Stable key of a configuration at its budget:
    ``<dataset>-<arch>-<vae|mM-kK>-<kl_estimator>-s<seed>-<12 hex digits>``.

    The hex digits are the start of the SHA-256 of ``canonical_json(flat)``, so the same
    configuration has the same key in every process and every run (no Python ``hash()``), a
    partial dict and its ``complete_config`` share a key, and device, data folder and
    evaluation memory do not change it. ``max_epochs`` is in the hash: one configuration at
    two budgets is two trials (docs/BUDGETS.md). The readable prefix is for people; the hash
    decides.
    """
    return _key(flat, ())


def config_key(flat: dict[str, Any]) -> str:
    """The key of a configuration whatever its budget: `trial_key`'s form, its hash over the
    configuration without `BUDGET_FIELDS`, so every budget of one configuration shares it."""
    return _key(flat, BUDGET_FIELDS)


def _key(flat: dict[str, Any], leave_out: tuple[str, ...]) -> str:
    full = complete_config(flat)
    digest = hashlib.sha256(canonical_json(full, leave_out).encode("utf-8")).hexdigest()[:12]
    model = "vae" if full["prior"] == "standard" else f"m{full['M']}-k{full['K']}"
    estimator = full["kl_estimator"]
    return f"{full['dataset']}-{full['arch']}-{model}-{estimator}-s{full['seed']}-{digest}"


def check_seeds(seeds: Any) -> int:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} is invalid: expected an integer >= 1")
    return seeds


@dataclass(frozen=True)
class SearchSpace:
    """A named search space: a paper grid (``kind="grid"``) or a define-by-run Optuna space
    (``kind="open"``).

    ``grid_params`` are the names a study's ``[search.grid]`` table may set (grids only), each
    with a one-line description in ``grid_help``; ``searched`` lists the field names an open
    space chooses when the study does not fix them.
    """

    name: str
    kind: str
    description: str
    grid_params: tuple[str, ...] = ()
    grid_help: dict[str, str] = field(default_factory=dict, compare=False)
    searched: tuple[str, ...] = ()
    enumerator: Callable[[dict[str, Any], int, dict[str, Any]], list[dict[str, Any]]] | None = (
        field(default=None, repr=False, compare=False)
    )
    suggester: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = field(
        default=None, repr=False, compare=False
    )

    def enumerate(
        self, fixed: dict[str, Any], seeds: int, grid: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every trial of the grid, in a fixed order, as complete flat configurations.

        ``fixed`` holds the study's constants (dataset, budget, model table); a field that the
        grid sets may not also be fixed (``ValueError``), except that a fixed ``dataset`` or
        ``arch`` narrows that axis to its value when ``grid`` does not list it. ``grid`` holds
        the study's list overrides (``grid_params``); seeds run 0 … ``seeds`` − 1.
        """
        if self.kind != "grid" or self.enumerator is None:
            raise ValueError(f"search space '{self.name}' is {self.kind}: it has no enumerate()")
        grid = dict(grid or {})
        unknown = sorted(set(grid) - set(self.grid_params))
        if unknown:
            raise ValueError(
                f"grid.{unknown[0]} is not a parameter of the grid '{self.name}': expected "
                f"some of {', '.join(self.grid_params)}"
            )
        return [complete_config(c) for c in self.enumerator(dict(fixed), check_seeds(seeds), grid)]

    def suggest(self, trial: Any, fixed: dict[str, Any]) -> dict[str, Any]:
        """One configuration chosen with ``trial.suggest_*`` (define-by-run), complete.

        A field present in ``fixed`` is not searched; the seed is ``fixed["seed"]`` or 0.
        """
        if self.kind != "open" or self.suggester is None:
            raise ValueError(f"search space '{self.name}' is a grid: it has no suggest()")
        config = self.suggester(trial, dict(fixed))
        config.setdefault("seed", 0)
        return complete_config(config)
