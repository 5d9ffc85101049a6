"""The paper's grids, enumerated in a fixed order (dataset, arch, model, K, seed).

A grid is a list of *models* — the standard-prior VAE and pseudo-mixture models with M
components and weights π — crossed with datasets, architectures, numbers of pseudo-inputs K and
seeds 0 … seeds − 1. The VAE has no pseudo-inputs: it appears once per dataset × arch × seed,
with K = ``VAE_K`` (1), and the analysis ignores K where prior = "standard".

A study's ``[search.grid]`` table overrides the lists (every grid documents its own in
``grid_help``):

- ``datasets`` (list of dataset names), ``archs`` (list of architectures), ``Ks`` (list of
  integers), and for the VAE-and-MixM grids ``Ms`` (list of M) and ``include_vae`` (bool);
  figure4 takes ``Ms`` (which of the paper's M = 2 / M = 3 lists) or ``pis`` (a list of weight
  lists of its own; M = each list's length).
- ``estimators`` (list of KL estimators: greedy, optimal, mc, lse), every grid: the training
  objective as an axis (the paper's bound against the alternatives); it crosses every model,
  the VAE included (for the VAE greedy = optimal = lse is the closed-form KL).
- A field the grid sets (prior, M, pi, K, seed) may not be fixed by the study. ``dataset``,
  ``arch`` and ``kl_estimator`` may be: a fixed value narrows that axis to itself — but not
  together with the matching ``datasets`` / ``archs`` / ``estimators`` list (``ValueError``:
  say it in one place).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from models.config import ARCHITECTURES, DATASETS, KL_ESTIMATORS, ModelConfig
from search_spaces.base import VAE_K, SearchSpace
from search_spaces.simplex import figure4_pis


@dataclass(frozen=True)
class _Model:
    prior: str
    M: int
    pi: tuple[float, ...] | None  # None: uniform
    uses_k: bool


_VAE = _Model("standard", 1, None, uses_k=False)
_GRID_SET = ("prior", "M", "pi", "K", "seed")


def _list(grid: dict[str, Any], param: str, ok: Any, accepted: str) -> list[Any] | None:
    """``grid[param]`` checked: a non-empty list without repeats whose items pass ``ok``."""
    if param not in grid:
        return None
    values = grid[param]
    if (
        not isinstance(values, list)
        or not values
        or not all(ok(v) for v in values)
        or len({repr(v) for v in values}) != len(values)
    ):
        raise ValueError(f"grid.{param}={values!r} is invalid: expected a non-empty list of "
                         f"distinct {accepted}")
    return values


def _is_int(low: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _axis(fixed: dict[str, Any], grid: dict[str, Any], name: str, param: str,
          default: Sequence[Any], choices: Sequence[str]) -> list[Any]:
    """The values of the ``name`` axis: the grid list, else the fixed value, else ``default``."""
    values = _list(grid, param, lambda v: v in choices, "values among " + ", ".join(choices))
    if values is not None and name in fixed:
        raise ValueError(
            f"{name}={fixed[name]!r} is fixed and grid.{param}={values!r} lists it too: "
            f"give the {name} in one place"
        )
    if values is None:
        values = [fixed[name]] if name in fixed else list(default)
    return values


def _check_fixed(space: str, fixed: dict[str, Any]) -> None:
    for name in _GRID_SET:
        if name in fixed:
            raise ValueError(
                f"{name}={fixed[name]!r} is fixed but the grid '{space}' sets {name}: "
                f"remove it from the study's fixed fields"
            )


def _product(fixed: dict[str, Any], seeds: int, grid: dict[str, Any], models: list[_Model],
             archs: Sequence[str], ks: Sequence[int]) -> list[dict[str, Any]]:
    datasets = _axis(fixed, grid, "dataset", "datasets", [], DATASETS)
    arch_values = _axis(fixed, grid, "arch", "archs", archs, ARCHITECTURES)
    # None: not set here (ModelConfig's default), so a grid without the axis keeps its keys.
    estimators = _axis(fixed, grid, "kl_estimator", "estimators", [None], KL_ESTIMATORS)
    k_values = _list(grid, "Ks", _is_int(1), "integers >= 1") or list(ks)
    configs = []
    for dataset in datasets or [None]:  # None: the dataset's default (TrainConfig)
        for arch in arch_values:
            for estimator in estimators:
                for model in models:
                    for k in k_values if model.uses_k else [VAE_K]:
                        for seed in range(seeds):
                            config = {**fixed, "arch": arch, "prior": model.prior, "M": model.M,
                                      "pi": None if model.pi is None else list(model.pi),
                                      "K": k, "seed": seed}
                            if dataset is not None:
                                config["dataset"] = dataset
                            if estimator is not None:
                                config["kl_estimator"] = estimator
                            configs.append(config)
    return configs


def _vae_and_mixtures(space: str, archs: Sequence[str], ks: Sequence[int]):
    """The enumerator of a grid of the VAE and Mix1 … MixM (uniform π) against K."""

    def enumerate_grid(fixed: dict[str, Any], seeds: int, grid: dict[str, Any]):
        _check_fixed(space, fixed)
        ms = _list(grid, "Ms", _is_int(1), "integers >= 1") or [1, 2, 3]
        include_vae = grid.get("include_vae", True)
        if not isinstance(include_vae, bool):
            raise ValueError(f"grid.include_vae={include_vae!r} is invalid: expected true or false")
        models = ([_VAE] if include_vae else []) + [
            _Model("pseudo_mixture", m, None, uses_k=True) for m in ms
        ]
        return _product(fixed, seeds, grid, models, archs, ks)

    return enumerate_grid


def _figure4(fixed: dict[str, Any], seeds: int, grid: dict[str, Any]) -> list[dict[str, Any]]:
    _check_fixed("figure4", fixed)
    if "Ms" in grid and "pis" in grid:
        raise ValueError("grid.Ms and grid.pis are both given: expected one of them (pis "
                         "replaces the paper's lists)")
    pis = _list(
        grid, "pis",
        lambda v: isinstance(v, list) and len(v) >= 1
        and all(isinstance(p, int | float) and not isinstance(p, bool) for p in v),
        "weight lists",
    )
    if pis is None:
        ms = _list(grid, "Ms", lambda v: v in (2, 3), "values among 2, 3") or [2, 3]
        pis = [pi for m in ms for pi in figure4_pis(m)]
    for pi in pis:
        try:
            ModelConfig(M=len(pi), pi=tuple(pi))
        except ValueError as exc:
            raise ValueError(f"grid.pis={pis!r} is invalid: {exc}") from None
    models = [_Model("pseudo_mixture", len(pi), tuple(pi), uses_k=True) for pi in pis]
    return _product(fixed, seeds, grid, models, ["mlp"], [500])


_COMMON_HELP = {
    "datasets": "datasets to cross (default: the study's data.dataset)",
    "archs": "architectures to cross, of mlp, cnn, pixel",
    "Ks": "numbers of pseudo-inputs K for the mixture models",
    "estimators": "KL estimators to cross, of greedy, optimal, mc, lse (default: model."
                  "kl_estimator)",
}
_VAE_MIX_HELP = {
    **_COMMON_HELP,
    "Ms": "mixture sizes M of the pseudo-mixture models (default [1, 2, 3])",
    "include_vae": "also run the standard-prior VAE (default true)",
}
_VAE_MIX_PARAMS = ("datasets", "archs", "Ms", "Ks", "include_vae", "estimators")

GRIDS: tuple[SearchSpace, ...] = (
    SearchSpace(
        "table1", "grid",
        "Table 1: archs [mlp, cnn, pixel] x (VAE + M in [1, 2, 3] x K in [100, 500, 1000]) "
        "x seeds",
        _VAE_MIX_PARAMS, {**_VAE_MIX_HELP, "archs": _COMMON_HELP["archs"]
                          + " (default all three)", "Ks": "K values (default [100, 500, 1000])"},
        enumerator=_vae_and_mixtures("table1", ARCHITECTURES, [100, 500, 1000]),
    ),
    SearchSpace(
        "figure3", "grid",
        "Figure 3: VAE, Mix1, Mix2, Mix3 against K in [100, 500, 1000] for one arch "
        "(the study's model.arch, default mlp) x seeds",
        _VAE_MIX_PARAMS, {**_VAE_MIX_HELP, "archs": "architectures (default: model.arch or mlp)",
                          "Ks": "K values (default [100, 500, 1000])"},
        enumerator=_vae_and_mixtures("figure3", ["mlp"], [100, 500, 1000]),
    ),
    SearchSpace(
        "figure4", "grid",
        "Figure 4: the paper's mixture coefficients (M = 2: 5 lists, M = 3: 6 lists) x "
        "datasets x archs [mlp] x K [500] x seeds",
        ("datasets", "archs", "Ks", "Ms", "pis", "estimators"),
        {**_COMMON_HELP, "archs": "architectures (default: model.arch or mlp)",
         "Ks": "K values (default [500])",
         "Ms": "which of the paper's lists: M in [2, 3] (default both)",
         "pis": "weight lists of your own instead of the paper's, e.g. [[0.25, 0.75]]"},
        enumerator=_figure4,
    ),
    SearchSpace(
        "quickstart", "grid",
        "Quickstart: mlp, VAE + M in [1, 2, 3] x K in [10, 50] x seeds (14 trials with 2 seeds)",
        _VAE_MIX_PARAMS, {**_VAE_MIX_HELP, "archs": "architectures (default: model.arch or mlp)",
                          "Ks": "K values (default [10, 50])"},
        enumerator=_vae_and_mixtures("quickstart", ["mlp"], [10, 50]),
    ),
)
