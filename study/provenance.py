"""Which code runs a study's trials, and which code it is: the trial function by name, the git
revision and the library versions (saved in ``study.json`` and in every trial record).

The trial function travels to Ray's workers as ``module:qualname`` (`function_name`) and is
looked up there (`resolve_function`); ``$GMMPVAE_TRIAL_FUNCTION`` chooses another one (tests,
benchmarks). Nothing here imports Ray.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRIAL_FUNCTION = "models.trial:run_trial"
ENV_TRIAL_FUNCTION = "GMMPVAE_TRIAL_FUNCTION"  # "module:function" (tests and benchmarks)


def function_name(fn: Callable[..., Any] | str) -> str:
    """``module:qualname`` of a module-level function (how the trial function travels)."""
    if isinstance(fn, str):
        return fn
    return f"{fn.__module__}:{fn.__qualname__}"


def chosen_function(trial_function: Callable[..., Any] | str | None) -> str | None:
    """``module:qualname`` of the trial function asked for (an argument, else
    ``$GMMPVAE_TRIAL_FUNCTION``), or None when none is (the default then)."""
    chosen = trial_function or os.environ.get(ENV_TRIAL_FUNCTION)
    return function_name(chosen) if chosen else None


def resolve_function(name: str) -> Callable[..., Any]:
    """The function named ``module:qualname``."""
    module_name, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def versions() -> dict[str, str]:
    """Versions of the libraries that decide a trial's numbers."""
    out = {"python": platform.python_version()}
    for package in ("torch", "ray", "optuna", "numpy"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "missing"
    return out


def git_revision() -> str:
    """``git rev-parse HEAD`` of the code that runs, or ``unknown``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and rev else "unknown"
