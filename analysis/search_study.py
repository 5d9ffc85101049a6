"""A study's search rebuilt as an in-memory Optuna study from its Parquet results.

Optuna's importance evaluators and plots take any ``optuna.Study``; the report hands them one
rebuilt from ``trials.parquet`` / ``epochs.parquet`` (public interfaces only:
``optuna.create_study`` on an ``InMemoryStorage``, ``optuna.trial.create_trial``,
``Study.add_trials``, ``optuna.trial.FixedTrial``), so the report's tables and figures come
from the same trials and agree to the digit. What each rebuilt trial holds:

- **value**: what the search was told for the study's ``[search] metric`` — a test metric or
  ``best_val_loss`` from the trial's row, an epoch metric (``val_elbo_mc``, ``val_loss``, …)
  from the trial's last epoch (the trainable's final result carries its last epoch's values);
- **params and distributions**, for an open search, exactly the ones the search drew: the
  study's space (``spec.search.space`` of study.json) is run again on an
  ``optuna.trial.FixedTrial`` holding the parameters recovered from the trial's configuration,
  and the FixedTrial's distributions are the space's own (π: the stick-breaking fractions
  ``pi_0 … pi_{M−2}`` recovered by `fractions_of`; ``pi_M2``/``pi_M3``: the Figure 4 string;
  K log-int, lr log-float, arch and latent_dim categorical). The configuration the space
  returns must give back the stored one, else the trial is left out with a note. For a grid,
  a categorical distribution over the values of each setting that varies (π as its label);
- **user attributes**: ``trial_key`` and ``test_ll`` (the second target of the importances).

Only completed trials with a finite value are added (Optuna's importances and plots read
complete trials only), **in the order the search asked them**: the trial numbers of the
study's Optuna journal (``STUDY/optuna.journal``, or ``[study] optuna_storage`` when it is a
local journal file; read with ``optuna.load_study``, matched by the ``trial_key`` user
attribute), so the optimisation history is numbered as the search was and fANOVA — whose
forest depends on the order of its rows — agrees with a call on the journal to the digit.
Without a readable journal (an RDB storage, a study on an object store) the order is
``started_at``, which can swap trials that started together (`Rebuilt.order` says which).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import polars as pl
from optuna.storages.journal import JournalFileBackend, JournalStorage

import search_spaces
from analysis.load import COMPLETED, EPOCHS, Frames, study_spec
from analysis.location import Location
from search_spaces.quiet import quiet_optuna
from search_spaces.simplex import FIGURE4_PIS, PI_FLOOR, decode_pi

# Grid settings that become categorical parameters where they vary (π as its label).
GRID_PARAMS = ("arch", "prior", "M", "K", "pi_label", "latent_dim", "kl_estimator", "lr",
               "warmup_epochs", "seed")
# Flat-config fields that are not trial columns or not settings: not matched on the way back.
NOT_COMPARED = frozenset({"data_dir", "device", "image_shape", "likelihood", "compile",
                          "eval_memory_mb", "trial_key"})
TRIAL_FRAME = {"study": pl.String, "metric": pl.String, "direction": pl.String,
               "number": pl.Int64, "trial_key": pl.String, "value": pl.Float64,
               "test_ll": pl.Float64, "params": pl.String, "distributions": pl.String,
               "left_out": pl.String, "order": pl.String}
JOURNAL_FILE = "optuna.journal"  # the study folder's default Optuna storage (study.spec)
TOLERANCE = 1e-9  # a recovered configuration matches its row within this (π floats)


@dataclass(frozen=True)
class Rebuilt:
    """One study's search as an in-memory Optuna study, and what it took to rebuild it."""

    label: str  # the report's study label
    study: optuna.Study
    metric: str
    direction: str  # "maximize" or "minimize"
    space: str  # the search space's name ("" when study.json does not say)
    kind: str  # "open" or "grid"
    left_out: list[str] = field(default_factory=list)  # trials not rebuilt, with why
    order: str = "journal"  # where the trials' order came from: "journal" or "started_at"

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False,
                                     states=(optuna.trial.TrialState.COMPLETE,))


def fractions_of(pi: Sequence[float], floor: float = PI_FLOOR) -> list[float]:
    """The stick-breaking fractions u_0 … u_{M−2} of a searched π (the inverse of
    ``floor_simplex(stick_breaking(u))``, `search_spaces.simplex`): undo the floor,
    p_m = (π_m − f) / (1 − M f), then component m's share of what is left, s_m = p_m / rest,
    is the Beta(1, M − 1 − m) inverse CDF of u_m: u_m = 1 − (1 − s_m)^(M − 1 − m)."""
    m_total = len(pi)
    scale = 1.0 - m_total * floor
    p = [max(0.0, (w - floor) / scale) for w in pi]
    out, rest = [], 1.0
    for m in range(m_total - 1):
        share = min(1.0, p[m] / rest) if rest > 0 else 0.0
        out.append(min(1.0, max(0.0, 1.0 - (1.0 - share) ** (m_total - 1 - m))))
        rest -= p[m]
    return out


def metric_values(frames: Frames, metric: str) -> pl.DataFrame:
    """(study, trial_key, value): the value the search was told for ``metric`` (module doc)."""
    if metric in EPOCHS and metric not in ("study", "trial_key", "epoch"):
        return (
            frames.epochs
            .filter(pl.col(metric).is_not_null())
            # the last epoch the trial reported
            .sort("epoch")
            .group_by("study", "trial_key")
            .agg(pl.col(metric).last().alias("value"))
            .collect()
        )
    if metric not in frames.trials.columns:
        raise ValueError(f"search.metric={metric!r} is not a column of the results")
    return frames.trials.select("study", "trial_key", pl.col(metric).alias("value"))


def _candidates(row: dict[str, Any]) -> dict[str, Any]:
    """Every parameter an open space may have drawn for this trial, from its configuration."""
    params = {k: v for k, v in row.items() if v is not None and not isinstance(v, list)}
    pi = row.get("pi") or []
    params.update({f"pi_{i}": u for i, u in enumerate(fractions_of(pi))})
    for text in FIGURE4_PIS.get(len(pi), ()):
        if all(abs(a - b) < TOLERANCE for a, b in zip(decode_pi(text), pi, strict=True)):
            params[f"pi_M{len(pi)}"] = text
    return params


def _same(config: dict[str, Any], row: dict[str, Any]) -> str | None:
    """The first field where the recovered configuration differs from the row, or None."""
    for name, value in config.items():
        if name in NOT_COMPARED or name not in row or row[name] is None:
            continue
        stored = row[name]
        if isinstance(value, list | tuple):
            if len(value) != len(stored) or any(
                    abs(float(a) - float(b)) > TOLERANCE for a, b in zip(value, stored,
                                                                          strict=True)):
                return name
        elif isinstance(value, float) or isinstance(stored, float):
            if not math.isclose(float(value), float(stored), rel_tol=TOLERANCE,
                                abs_tol=TOLERANCE):
                return name
        elif value != stored:
            return name
    return None


def _open_trial(space: search_spaces.SearchSpace, fixed: dict[str, Any], row: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """(params, distributions) of one open-search trial, or why it cannot be rebuilt."""
    trial = optuna.trial.FixedTrial(_candidates(row))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FixedTrial warns on a value at a bound's rounding
            config = space.suggest(trial, {k: v for k, v in fixed.items()
                                           if k not in ("data_dir",)})
    except ValueError as exc:
        return f"its configuration is not one the space '{space.name}' draws ({exc})"
    differs = _same(config, row)
    if differs is not None:
        return f"the space '{space.name}' gives back another {differs}"
    return dict(trial.params), dict(trial.distributions)


def _fixed_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """The fields every trial of the study got (as `StudySpec.fixed_trial_fields`)."""
    fixed = dict(spec.get("budget") or {})
    fixed.update(spec.get("model") or {})
    dataset = (spec.get("data") or {}).get("dataset")
    if dataset is not None:
        fixed["dataset"] = dataset
    return fixed


def ask_order(study_dir: str, spec: dict[str, Any]) -> dict[str, int]:
    """trial_key → the number of its COMPLETE trial in the study's local Optuna journal (the
    order the search asked them; a re-run's later trial wins); {} without a readable one."""
    where = Location.of(study_dir)
    configured = (spec.get("study") or {}).get("optuna_storage")
    if where.remote or (configured and "://" in configured):
        return {}
    path = Path(configured) if configured else Path(where.path) / JOURNAL_FILE
    name = (spec.get("study") or {}).get("name")
    if not path.is_file() or not name:
        return {}
    try:
        with quiet_optuna():
            study = optuna.load_study(study_name=name, storage=JournalStorage(
                JournalFileBackend(str(path))))
    except (KeyError, ValueError, OSError):  # another study's journal, or a torn one
        return {}
    return {t.user_attrs["trial_key"]: t.number
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "trial_key" in t.user_attrs}


def _grid_params(done: pl.DataFrame) -> list[str]:
    return [c for c in GRID_PARAMS if done[c].n_unique() > 1]


def rebuild(frames: Frames, label: str) -> Rebuilt:
    """The study ``label`` of ``frames`` as an in-memory Optuna study (module docstring).

    The metric and its direction come from study.json's ``search`` table (a study without one
    is treated as a grid ranked by ``test_ll``)."""
    where = frames.studies.filter(pl.col("study") == label)
    spec = study_spec(where["path"][0]) if where.height else {}
    search = spec.get("search") or {}
    metric = search.get("metric", "test_ll")
    direction = "minimize" if search.get("mode") == "min" else "maximize"
    space_name = search.get("space", "")
    space = search_spaces.get(space_name) if space_name in search_spaces.names() else None
    kind = space.kind if space is not None else "grid"
    values = metric_values(frames, metric).filter(pl.col("study") == label)
    numbers = ask_order(where["path"][0], spec) if where.height else {}
    done = (
        frames.trials.filter((pl.col("study") == label) & (pl.col("state") == COMPLETED))
        .join(values, on=["study", "trial_key"], how="inner")
        .filter(pl.col("value").is_finite())
        .with_columns(pl.col("trial_key").replace_strict(numbers, default=None,
                                                         return_dtype=pl.Int64).alias("asked"))
    )
    order = "journal" if numbers and done["asked"].null_count() == 0 else "started_at"
    done = done.sort(*(["asked"] if order == "journal" else []), "started_at", "trial_key",
                     nulls_last=True)
    left_out: list[str] = []
    trials = []
    grid = _grid_params(done) if kind == "grid" else []
    grid_dists = {c: optuna.distributions.CategoricalDistribution(
        done[c].unique(maintain_order=True).sort(nulls_last=True).to_list()) for c in grid}
    fixed = _fixed_fields(spec)
    for row in done.iter_rows(named=True):
        if kind == "open":
            got = _open_trial(space, fixed, row)
            if isinstance(got, str):
                left_out.append(f"{row['trial_key']}: {got}")
                continue
            params, dists = got
        else:
            params, dists = {c: row[c] for c in grid}, grid_dists
        test_ll = row["test_ll"]
        trials.append(optuna.trial.create_trial(
            value=float(row["value"]), params=params, distributions=dists,
            user_attrs={"trial_key": row["trial_key"],
                        "test_ll": None if test_ll is None else float(test_ll)}))
    with quiet_optuna():
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                    direction=direction, study_name=label)
        study.add_trials(trials)
    return Rebuilt(label, study, metric, direction, space_name, kind, left_out, order)


def rebuild_all(frames: Frames) -> list[Rebuilt]:
    """`rebuild` for every study of ``frames`` (one unless ``--compare``)."""
    return [rebuild(frames, label) for label in frames.studies["study"].to_list()]


def to_frame(rebuilt: Sequence[Rebuilt]) -> pl.DataFrame:
    """The rebuilt trials as data: one row per trial (study, number, trial_key, value, test_ll,
    metric, direction, the params and distributions as Optuna's JSON, and the study's trials
    that could not be rebuilt, with why), so that an output's
    ``prep`` is data and its ``render`` draws Optuna's plots on `from_frame`'s study."""
    rows = [
        {"study": r.label, "metric": r.metric, "direction": r.direction, "number": t.number,
         "trial_key": t.user_attrs["trial_key"], "value": t.value,
         "test_ll": t.user_attrs["test_ll"], "params": json.dumps(t.params),
         "left_out": "; ".join(r.left_out), "order": r.order,
         "distributions": json.dumps({n: optuna.distributions.distribution_to_json(d)
                                      for n, d in t.distributions.items()})}
        for r in rebuilt for t in r.trials
    ]
    return pl.DataFrame(rows, schema=TRIAL_FRAME)


def from_frame(df: pl.DataFrame) -> optuna.Study:
    """The in-memory study of `to_frame`'s rows of one study (in their order)."""
    trials = [
        optuna.trial.create_trial(
            value=row["value"], params=json.loads(row["params"]),
            distributions={n: optuna.distributions.json_to_distribution(d)
                           for n, d in json.loads(row["distributions"]).items()},
            user_attrs={"trial_key": row["trial_key"], "test_ll": row["test_ll"]})
        for row in df.sort("number").iter_rows(named=True)
    ]
    with quiet_optuna():
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                    direction=df["direction"][0], study_name=df["study"][0])
        study.add_trials(trials)
    return study
