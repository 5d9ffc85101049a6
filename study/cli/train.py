"""``gmmpvae train``: train and evaluate one configuration, without Ray.

Every field of ``ModelConfig`` and ``TrainConfig`` is a flag, generated from the dataclasses
(``kl_estimator`` → ``--kl-estimator``; ``--M``, ``--K`` and ``--pi 0.3,0.7`` keep their
paper names), except ``image_shape`` and ``likelihood``, which follow from the dataset.
``--config FILE`` reads a TOML file first — flat keys, or ``[model]`` / ``[train]`` tables —
and flags override it. The trial folder is ``--out`` (default ``runs/<name>``, the name derived
from the configuration); running again into it resumes, or prints the finished result.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from models.config import (
    ARCHITECTURES,
    DATASETS,
    KL_ESTIMATORS,
    PRECISIONS,
    PRIORS,
    PSEUDO_INITS,
    ModelConfig,
    TrainConfig,
    TrialConfig,
)
from models.data import DATASETS as DATASET_SPECS
from models.records import METRICS_FILE
from models.sizing import check_fits
from models.trial import BUDGETS_DIR, check_folder, run_trial
from study.errors import UsageError
from study.spec.checks import memory_bytes

DERIVED = ("image_shape", "likelihood")  # from the dataset, never flags
CHOICES = {
    "arch": ARCHITECTURES, "prior": PRIORS, "kl_estimator": KL_ESTIMATORS,
    "pseudo_init": PSEUDO_INITS, "dataset": DATASETS, "precision": PRECISIONS,
}
KEEP_CASE = {"M", "K"}  # the paper's names: --M, --K


def _usage_error(message: str) -> Exception:
    return UsageError(" ".join(message.split()))


def parse_floats(text: str) -> tuple[float, ...]:
    """``"0.3,0.7"`` → (0.3, 0.7)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.3,0.7, got {text!r}"
        ) from None


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also yes/no, 1/0, on/off) → bool."""
    value = {"true": True, "yes": True, "1": True, "on": True,
             "false": False, "no": False, "0": False, "off": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def _flag_type(hint: Any) -> Any:
    """The argparse type of a dataclass field's type hint."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        return parse_floats
    if hint is bool:
        return parse_bool
    return hint if hint in (int, float, str) else str


def config_fields() -> list[tuple[str, Any, Any]]:
    """(name, type hint, default) of every flag-able field of ModelConfig and TrainConfig."""
    out = []
    for cls in (ModelConfig, TrainConfig):
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name not in DERIVED:
                default = f.default if f.default is not MISSING else f.default_factory()
                out.append((f.name, hints[f.name], default))
    return out


def _flag(name: str) -> str:
    return "--" + (name if name in KEEP_CASE else name.replace("_", "-"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of every config field (default: not given), plus --config, --out, --name, ..."""
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML file of config fields (flat, or [model]/[train]); "
                        "flags override it")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="trial folder (default: runs/<name>)")
    parser.add_argument("--name", help="trial name for the default folder "
                        "(default: derived from the dataset, arch, prior, M, K and seed)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start afresh, ignoring a checkpoint or result in the folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model (ModelConfig; image_shape and likelihood follow "
                                      "from the dataset)")
    train = parser.add_argument_group("training and evaluation (TrainConfig)")
    model_names = {f.name for f in fields(ModelConfig)}
    for name, hint, default in config_fields():
        group = model if name in model_names else train
        kind = _flag_type(hint)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"default: {shown}"
        if name == "pi":
            help_text = "mixture weights, comma-separated, summing to 1 (default: uniform 1/M)"
        group.add_argument(_flag(name), dest=name, type=kind, default=None,
                           choices=CHOICES.get(name), metavar=None if name in CHOICES else
                           name.upper(), help=help_text)


def read_toml(path: Path) -> dict[str, Any]:
    """A config file → flat dict of fields (tables [model] and [train] are merged in)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _usage_error(f"config file {path} not found") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _usage_error(f"cannot read config file {path}: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("model", "train") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    derived = sorted(set(flat) & set(DERIVED))
    if derived:
        raise _usage_error(f"{path}: {', '.join(derived)} follow from the dataset; remove them")
    return flat


def build_config(args: argparse.Namespace, image_shape: tuple[int, int] | None = None,
                 likelihood: str | None = None) -> TrialConfig:
    """Defaults < TOML file < flags; the dataset's image_shape and likelihood when given."""
    flat = read_toml(args.config) if args.config else {}
    for name, _, _ in config_fields():
        value = getattr(args, name, None)
        if value is not None:
            flat[name] = value
    if "pi" in flat and "M" not in flat and isinstance(flat["pi"], tuple | list):
        flat["M"] = len(flat["pi"])  # --pi 0.3,0.7 alone means M = 2
    if image_shape is not None:
        flat["image_shape"] = tuple(image_shape)
        flat["likelihood"] = likelihood
    return TrialConfig.from_flat(flat)


def default_name(cfg: TrialConfig) -> str:
    m, t = cfg.model, cfg.train
    prior = "vae" if m.prior == "standard" else f"M{m.M}-K{m.K}"
    return f"{t.dataset}-{m.arch}-{prior}-{m.kl_estimator}-seed{t.seed}"


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args)  # validates every field first
    spec = DATASET_SPECS[cfg.train.dataset]
    cfg = build_config(args, spec.image_shape, spec.likelihood)
    check_fits(cfg, memory_bytes())  # before anything is written: ValueError, one line
    out = args.out if args.out is not None else Path("runs") / (args.name or default_name(cfg))
    complete = not args.no_resume and (out / METRICS_FILE).is_file()
    before = check_folder(out, cfg) if complete else None  # the folder's max_epochs
    metrics = run_trial(cfg, out, resume=not args.no_resume, progress=not args.no_progress)
    budget = cfg.train.max_epochs
    if complete and before is not None and before < budget:
        print(f"gmmpvae train: {out} continued from its {before} epochs to {budget} (the "
              f"{before}-epoch result kept in {out / BUDGETS_DIR / str(before)}); its metrics:",
              file=sys.stderr)
    elif complete:
        print(f"gmmpvae train: {out} was complete; its metrics:", file=sys.stderr)
    print(json.dumps({"trial_dir": str(out), **metrics}, indent=2))
    return 0
