"""Optuna search spaces and the paper's grids, registered by name.

``get(name)`` returns a ``SearchSpace``:

- grids (``kind == "grid"``): ``table1``, ``figure3``, ``figure4``, ``quickstart`` —
  ``space.enumerate(fixed, seeds, grid=None)`` is the full, deterministic list of complete flat
  trial configurations (see ``search_spaces.grids`` for the lists and the ``grid`` overrides);
- open spaces (``kind == "open"``): ``open``, ``mixture_weights``, ``quickstart_open`` —
  ``space.suggest(trial, fixed)`` chooses one configuration define-by-run with an Optuna trial
  (see ``search_spaces.open_spaces``).

``trial_key(flat)`` is the stable key of a configuration (``search_spaces.base``). Nothing here
imports torch, Ray or Optuna.
"""

from __future__ import annotations

from search_spaces import open_spaces
from search_spaces.base import (
    BUDGET_FIELDS,
    DATASET_MODEL_FIELDS,
    KEY_FIELD,
    NON_IDENTITY_FIELDS,
    VAE_K,
    SearchSpace,
    canonical_json,
    complete_config,
    config_key,
    trial_fields,
    trial_key,
)
from search_spaces.grids import GRIDS
from search_spaces.simplex import PI_FLOOR

__all__ = [
    "BUDGET_FIELDS", "DATASET_MODEL_FIELDS", "KEY_FIELD", "NON_IDENTITY_FIELDS", "PI_FLOOR",
    "VAE_K", "SearchSpace", "canonical_json", "complete_config", "config_key", "get", "names",
    "trial_fields", "trial_key",
]

_OPEN: tuple[SearchSpace, ...] = (
    SearchSpace(
        "open", "open",
        "arch, latent_dim in {20, 40, 60}, M in 1..3 with pi on the simplex (pi_m >= 0.02), "
        "K in 50..1000 (log), lr in 1e-4..2e-3 (log), warmup_epochs in 0..max_epochs/10 "
        "(precision is an execution setting: budget.precision, not searched)",
        searched=("arch", "latent_dim", "M", "pi", "K", "lr", "warmup_epochs"),
        suggester=open_spaces.open_space,
    ),
    SearchSpace(
        "mixture_weights", "open",
        "M in {2, 3} and pi among the paper's Figure 4 lists (categorical)",
        searched=("M", "pi"),
        suggester=open_spaces.mixture_weights,
    ),
    SearchSpace(
        "quickstart_open", "open",
        "small: M in 1..3 with pi on the simplex (pi_m >= 0.02), K in 5..50 (log)",
        searched=("M", "pi", "K"),
        suggester=open_spaces.quickstart_open,
    ),
)

_REGISTRY: dict[str, SearchSpace] = {space.name: space for space in (*GRIDS, *_OPEN)}


def names() -> list[str]:
    """Names of every registered space, grids first, in registration order."""
    return list(_REGISTRY)


def get(name: str) -> SearchSpace:
    """The space registered as ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown search space {name!r}: expected one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
