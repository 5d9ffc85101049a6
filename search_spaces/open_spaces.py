"""Define-by-run Optuna spaces: plain functions of an Optuna trial and the study's fixed fields.

Each function asks ``trial.suggest_*`` for the fields the study does not fix (``if`` for the
conditional ones: π exists only for M > 1, K only for the pseudo-mixture prior) and returns a
flat dict whose keys are ModelConfig / TrainConfig field names. No I/O, no torch.

How trials are ranked is the study's ``[search] metric``; the open_search preset ranks (and
lets ASHA stop) by ``val_elbo_mc``, the validation MC ELBO, and trains with ``lse``: the
training objective's own bound (``val_loss``; under the paper's greedy bound) is not
comparable across estimators, M or K and ranks models against their IS LL (the report's
claim d), so it must not choose between the configurations this space proposes.

Precision is not searched: it changes how fast a trial runs on a given machine (and bf16 on a
CPU without native bf16 is refused, models.precision), not the model the study is about, so a
search over it would rank machines' arithmetic. It is an execution setting of the study
(``[budget] precision``), the same for every trial.

Continuous π: ``pi_0 … pi_{M−2}`` are stick-breaking fractions in [0, 1] (uniform ones give the
uniform distribution on the simplex, ``simplex.stick_breaking``), lifted to π_m ≥ 0.02
(``simplex.floor_simplex``). Categorical π (the paper's Figure 4 lists): a string choice
``pi_M2`` / ``pi_M3`` such as ``"0.1,0.9"``, decoded to floats, because an Optuna categorical
choice must be a str, int, float, bool or None.
"""

from __future__ import annotations

from typing import Any

from models.config import ARCHITECTURES, TrainConfig
from search_spaces.simplex import FIGURE4_PIS, decode_pi, floor_simplex, stick_breaking

LATENT_DIMS = (20, 40, 60)


def _suggest_mixture(trial: Any, fixed: dict[str, Any], config: dict[str, Any], max_m: int) -> None:
    """M (integer 1 … ``max_m``) and π on the simplex, conditional on M; a fixed ``pi`` fixes
    M = len(pi) too."""
    if fixed.get("pi") is not None:
        config["M"] = len(fixed["pi"])
        return
    m = fixed["M"] if "M" in fixed else trial.suggest_int("M", 1, max_m)
    config["M"] = m
    if m == 1:
        config["pi"] = [1.0]
    else:
        fractions = [trial.suggest_float(f"pi_{i}", 0.0, 1.0) for i in range(m - 1)]
        config["pi"] = floor_simplex(stick_breaking(fractions))


def _suggest_k(
    trial: Any, fixed: dict[str, Any], config: dict[str, Any], low: int, high: int
) -> None:
    """K pseudo-inputs, log-uniform integer, only for the pseudo-mixture prior."""
    if "K" not in fixed and fixed.get("prior", "pseudo_mixture") == "pseudo_mixture":
        config["K"] = trial.suggest_int("K", low, high, log=True)


def open_space(trial: Any, fixed: dict[str, Any]) -> dict[str, Any]:
    """The open search: architecture, latent size, M ∈ 1…3 with π on the simplex, K ∈ 50…1000
    (log), learning rate 1e-4…2e-3 (log) and warm-up length 0…max_epochs/10 (precision comes
    from the study, not the search: module docstring)."""
    config = dict(fixed)
    if "arch" not in fixed:
        config["arch"] = trial.suggest_categorical("arch", ARCHITECTURES)
    if "latent_dim" not in fixed:
        config["latent_dim"] = trial.suggest_categorical("latent_dim", LATENT_DIMS)
    _suggest_mixture(trial, fixed, config, max_m=3)
    _suggest_k(trial, fixed, config, 50, 1000)
    if "lr" not in fixed:
        config["lr"] = trial.suggest_float("lr", 1e-4, 2e-3, log=True)
    if "warmup_epochs" not in fixed:
        # Up to a tenth of the run (the paper: 200 of 5000 epochs); 0 = no warm-up.
        high = max(1, int(fixed.get("max_epochs", TrainConfig.max_epochs)) // 10)
        config["warmup_epochs"] = trial.suggest_int("warmup_epochs", 0, high)
    return config


def mixture_weights(trial: Any, fixed: dict[str, Any]) -> dict[str, Any]:
    """M ∈ {2, 3} and π among the paper's Figure 4 lists (a categorical choice per M); every
    other field comes from the study."""
    if "pi" in fixed:
        raise ValueError("pi is what the space 'mixture_weights' chooses: it may not be fixed")
    config = dict(fixed)
    m = fixed["M"] if "M" in fixed else trial.suggest_categorical("M", tuple(FIGURE4_PIS))
    if m not in FIGURE4_PIS:
        raise ValueError(f"M={m!r} is invalid: expected one of 2, 3 for 'mixture_weights'")
    config["M"] = m
    config["pi"] = decode_pi(trial.suggest_categorical(f"pi_M{m}", FIGURE4_PIS[m]))
    return config


def quickstart_open(trial: Any, fixed: dict[str, Any]) -> dict[str, Any]:
    """A small open space for a laptop: M ∈ 1…3 with π on the simplex and K ∈ 5…50 (log);
    the architecture and everything else come from the study."""
    config = dict(fixed)
    _suggest_mixture(trial, fixed, config, max_m=3)
    _suggest_k(trial, fixed, config, 5, 50)
    return config
