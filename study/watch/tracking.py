"""The ``[tracking]`` section of a study: which experiment trackers follow its trials.

Fields (all optional; nothing is tracked by default):

``tensorboard``  true → TensorBoard event files under ``STUDY/tensorboard/<trial_key>/``
``mlflow``       true → the local store ``sqlite:///STUDY/mlflow.db``; or a tracking URI
                 (``http://127.0.0.1:5000``, ``sqlite:///…``, ``postgresql://…``, ``databricks``)
``wandb``        a table ``{project = "...", mode = "offline" | "online"}`` (mode default
                 offline: run folders under ``STUDY/wandb/``, no network)

Each tracker is an optional extra of the package (``pip install .[tracking]``);
`check_available` refuses a missing one in one line naming the extra, before Ray starts.
This module holds data and validation only (no tracker and no Ray is imported here): the
writers are `study.watch.trackers`, the Tune callback that feeds them `study.tune.trackers`.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from typing import Any

from study.errors import UsageError
from study.store.layout import is_uri

KEYS = ("tensorboard", "mlflow", "wandb")
WANDB_KEYS = ("project", "mode")
WANDB_MODES = ("offline", "online")
TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
WANDB_DIR = "wandb"
EXTRA = "tracking"
# tracker -> (modules it needs, the extra that installs them)
REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboardX",), EXTRA),
    "mlflow": (("mlflow",), EXTRA),
    "wandb": (("wandb",), EXTRA),
    "dashboard": (("optuna_dashboard",), "dashboard"),
}
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class TrackingSection:
    """What the study's trials are logged to (``mlflow``: None, "" for the local default, or
    a tracking URI; ``wandb_project``: None for no W&B)."""

    tensorboard: bool = False
    mlflow: str | None = None
    wandb_project: str | None = None
    wandb_mode: str = "offline"

    @property
    def enabled(self) -> tuple[str, ...]:
        """The trackers this section turns on, in a fixed order."""
        on = {"tensorboard": self.tensorboard, "mlflow": self.mlflow is not None,
              "wandb": self.wandb_project is not None}
        return tuple(name for name in KEYS if on[name])

    def to_dict(self) -> dict[str, Any]:
        """The section as a study file writes it (absent trackers left out)."""
        out: dict[str, Any] = {}
        if self.tensorboard:
            out["tensorboard"] = True
        if self.mlflow is not None:
            out["mlflow"] = self.mlflow or True
        if self.wandb_project is not None:
            out["wandb"] = {"project": self.wandb_project, "mode": self.wandb_mode}
        return out


def parse(table: dict[str, Any], bad: Any) -> TrackingSection:
    """The validated section; ``bad(name, value, accepted)`` builds the one-line error
    (`study.spec`'s, which names the file or the command line)."""
    tensorboard = table.get("tensorboard", False)
    if not isinstance(tensorboard, bool):
        raise bad("tracking.tensorboard", tensorboard, "true or false")
    mlflow = table.get("mlflow")
    if mlflow is False:
        mlflow = None
    elif mlflow is True:
        mlflow = ""
    elif mlflow is not None and not (isinstance(mlflow, str) and mlflow.strip()):
        raise bad("tracking.mlflow", mlflow, "true (a store in the study folder) or an MLflow "
                  "tracking URI")
    wandb = table.get("wandb")
    project, mode = None, "offline"
    if wandb is not None:
        if not isinstance(wandb, dict):
            raise bad("tracking.wandb", wandb, "a table {project = \"...\", mode = \"offline\" "
                      "| \"online\"}")
        unknown = sorted(set(wandb) - set(WANDB_KEYS))
        if unknown:
            raise bad(f"tracking.wandb.{unknown[0]}", wandb[unknown[0]],
                      "no such key: one of " + ", ".join(WANDB_KEYS))
        project = wandb.get("project")
        if not (isinstance(project, str) and _PROJECT_RE.match(project)):
            raise bad("tracking.wandb.project", project, "a W&B project name (letters, digits, "
                      "'_', '.', '-')")
        mode = wandb.get("mode", "offline")
        if mode not in WANDB_MODES:
            raise bad("tracking.wandb.mode", mode, " or ".join(WANDB_MODES))
    return TrackingSection(tensorboard, mlflow, project, mode)


def check_available(names: tuple[str, ...] | list[str]) -> None:
    """Refuse, in one line naming the extra, a tracker whose package is not installed."""
    for name in names:
        modules, extra = REQUIREMENTS[name]
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise UsageError(f"{name} needs the '{missing[0]}' package, which is not "
                             f"installed: pip install 'gmmpvae-study[{extra}]'")


def check_storage(section: TrackingSection, storage: str) -> None:
    """Trackers that write into the study folder need it to be a local folder."""
    local = [n for n in ("tensorboard", "wandb") if n in section.enabled]
    if section.mlflow == "":
        local.append("mlflow")
    if local and is_uri(storage):
        raise UsageError(f"tracking.{local[0]} writes into the study folder, which must be a "
                         f"local folder (study.storage={storage!r} is a URI): give mlflow a "
                         "tracking URI, or track from a local study")


def tensorboard_dir(storage: str) -> str:
    return os.path.join(storage, TENSORBOARD_DIR)


def mlflow_uri(section_uri: str | None, storage: str) -> str:
    """The MLflow tracking URI: the section's, or the SQLite store in the study folder."""
    if section_uri:
        return section_uri
    return "sqlite:///" + os.path.join(os.path.abspath(storage), MLFLOW_DB)


def wandb_dir(storage: str) -> str:
    return os.path.join(storage, WANDB_DIR)
