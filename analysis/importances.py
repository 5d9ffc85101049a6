"""Which hyperparameters matter: Optuna's parameter importances, two evaluators, with intervals.

For each study, on its search rebuilt from the Parquet results (`analysis.search_study`), and
for two targets — the study's own metric (what the search ranked by) and the test IS LL — the
normalised importances of ``optuna.importance.get_param_importances`` with two named
evaluators:

- **PED-ANOVA** (``PedAnovaImportanceEvaluator()``, Optuna 5's default): how differently a
  parameter is distributed in the best 10 % of the trials than in all of them; it reads
  conditional parameters (π's fractions exist only for M > 1). It is deterministic: it takes
  no seed.
- **fANOVA** (``FanovaImportanceEvaluator(seed=SEED)``): the share of the variance of a random
  forest's prediction that each parameter explains; it reads only the parameters every trial
  has (conditional ones are left out).

The two answer different questions (PED-ANOVA: what sets the best trials apart; fANOVA: what
moves the value overall), so they may disagree; both are shown.

**Intervals**: the trials are resampled with replacement (`N_BOOT` times, seeded with `SEED`),
the importances recomputed on each resample (the same parameters), and the 2.5 and 97.5
percentiles reported: how much the importances depend on which trials happened to be run.

**When the trials are too few to rank the parameters** (the sentence of each evaluator and
target): with fewer than `MIN_TRIALS` completed trials — PED-ANOVA's best 10 % then holds one
trial, and a forest of a handful of points explains anything — the numbers are shown but the
report says they rank nothing; with more, a parameter is said to come first only when its
interval lies above every other parameter's, else the report names those whose intervals
overlap the first one's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import polars as pl

from analysis.load import Frames
from analysis.registry import register
from analysis.search_study import Rebuilt, rebuild_all
from analysis.style import new_figure, save_figure
from analysis.tables import number, write_table
from search_spaces.quiet import quiet_optuna

SEED = 0
N_BOOT = 50  # each fANOVA resample fits a 64-tree forest: ≈ 0.1-0.5 s
MIN_TRIALS = 20  # below it: too few trials to rank (module docstring)
EVALUATORS: dict[str, Callable[[], optuna.importance.BaseImportanceEvaluator]] = {
    "PED-ANOVA": lambda: optuna.importance.PedAnovaImportanceEvaluator(),
    "fANOVA": lambda: optuna.importance.FanovaImportanceEvaluator(seed=SEED),
}
SCHEMA = {"study": pl.String, "target": pl.String, "evaluator": pl.String, "param": pl.String,
          "importance": pl.Float64, "low": pl.Float64, "high": pl.Float64, "rank": pl.Int64,
          "trials": pl.Int64, "optuna": pl.String}


def target_of(rebuilt: Rebuilt, target: str) -> Callable[[optuna.trial.FrozenTrial], float] | None:
    """Optuna's ``target`` for the study metric (None: the trial's value, read in the study's
    direction) or for test IS LL: its negative, because PED-ANOVA reads a given ``target`` as
    lower-is-better whatever the study's direction (Optuna's advice: multiply by −1); fANOVA's
    variance shares do not change with the sign."""
    if target == rebuilt.metric:
        return None
    return lambda t: -float(t.user_attrs[target])


def importances(study: optuna.Study, evaluator: str,
                target: Callable[[optuna.trial.FrozenTrial], float] | None,
                params: list[str] | None = None) -> dict[str, float]:
    """Optuna's own normalised importances (``get_param_importances``) with ``evaluator``."""
    with quiet_optuna(), warnings.catch_warnings():
        # PED-ANOVA warns of regimes with < 2 trials (`rank_sentence` says what that means)
        # and that a target is read as lower-is-better (`target_of` negates IS LL)
        warnings.simplefilter("ignore", UserWarning)
        return optuna.importance.get_param_importances(
            study, evaluator=EVALUATORS[evaluator](), params=params, target=target)


def _resampled(study: optuna.Study, rng: np.random.Generator) -> optuna.Study:
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    picks = rng.integers(0, len(trials), len(trials))
    with quiet_optuna():
        copy = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                   direction=study.direction)
        copy.add_trials([trials[i] for i in picks])
    return copy


def bootstrap(study: optuna.Study, evaluator: str,
              target: Callable[[optuna.trial.FrozenTrial], float] | None, params: list[str],
              n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """(n_boot, len(params)) importances on trials resampled with replacement; NaN for a
    resample on which the evaluator fails (e.g. no trial of it has a conditional parameter)."""
    rng = np.random.default_rng(seed)
    out = np.full((n_boot, len(params)), np.nan)
    for b in range(n_boot):
        copy = _resampled(study, rng)
        try:
            got = importances(copy, evaluator, target, params)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        out[b] = [got.get(p, np.nan) for p in params]
    return out


def rank_sentence(part: pl.DataFrame) -> str:
    """The report's sentence on whether ``part`` (one study, target, evaluator) ranks its
    parameters (module docstring)."""
    study, target, evaluator = part["study"][0], part["target"][0], part["evaluator"][0]
    n = int(part["trials"][0])
    head = f"{study} · {target} · {evaluator}: "
    if n < MIN_TRIALS:
        return (head + f"{n} completed trials are too few to rank the parameters (fewer than "
                f"{MIN_TRIALS}): the importances describe these trials only.")
    part = part.sort("importance", descending=True)
    first = part.row(0, named=True)
    overlap = part.slice(1).filter(pl.col("high") >= first["low"])["param"].to_list()
    if not overlap:
        return head + (f"{first['param']} comes first: its interval lies above every other "
                       "parameter's.")
    return head + (f"no parameter comes clearly first: the intervals of {first['param']} and "
                   f"{', '.join(overlap)} overlap.")


def prep(frames: Frames) -> pl.DataFrame:
    rows = []
    for rebuilt in rebuild_all(frames):
        n = len(rebuilt.trials)
        params = sorted({p for t in rebuilt.trials for p in t.params})
        if n < 2 or not params:
            continue
        for target in dict.fromkeys((rebuilt.metric, "test_ll")):
            fn = target_of(rebuilt, target)
            for evaluator in EVALUATORS:
                try:
                    got = importances(rebuilt.study, evaluator, fn)
                except (ValueError, RuntimeError):  # e.g. no parameter every trial has
                    continue
                names = list(got)
                boot = bootstrap(rebuilt.study, evaluator, fn, names)
                low, high = np.nanpercentile(boot, [2.5, 97.5], axis=0) if names else ([], [])
                for rank, name in enumerate(names, 1):
                    rows.append({"study": rebuilt.label, "target": target,
                                 "evaluator": evaluator, "param": name,
                                 "importance": got[name], "low": float(low[rank - 1]),
                                 "high": float(high[rank - 1]), "rank": rank, "trials": n,
                                 "optuna": optuna.__version__})
    return pl.DataFrame(rows, schema=SCHEMA)


def notes(df: pl.DataFrame) -> list[str]:
    parts = df.partition_by(["study", "target", "evaluator"], maintain_order=True)
    return [f"Optuna {df['optuna'][0]}; intervals: 2.5–97.5 percentiles over {N_BOOT} "
            f"resamples of the trials (seed {SEED}); fANOVA seeded {SEED}, PED-ANOVA takes no "
            "seed.", *[rank_sentence(p) for p in parts]]


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    panels = df.select("study", "target").unique(maintain_order=True).rows()
    fig, axes = new_figure(len(panels), ncols=2, panel_size=(5.5, 3.6))
    for ax, (study, target) in zip(axes, panels, strict=True):
        part = df.filter((pl.col("study") == study) & (pl.col("target") == target))
        params = (part.group_by("param").agg(pl.col("importance").max())
                  .sort("importance")["param"].to_list())
        y = np.arange(len(params))
        for i, (evaluator, colour) in enumerate(zip(sorted(EVALUATORS, reverse=True),
                                                    ("C0", "C1"), strict=True)):
            one = part.filter(pl.col("evaluator") == evaluator)
            at = dict(zip(one["param"], one.select("importance", "low", "high").rows(),
                          strict=True))
            vals = np.array([at.get(p, (np.nan,) * 3) for p in params])
            err = np.abs(vals[:, 1:].T - vals[:, 0])
            ax.barh(y + (i - 0.5) * 0.38, vals[:, 0], height=0.38, color=colour,
                    xerr=np.nan_to_num(err), capsize=2, label=evaluator)
        ax.set_yticks(y, params)
        ax.set_xlabel("importance (normalised; bars: 95% resampling interval)")
        ax.set_title(f"{target}" + (f" — {study}" if df["study"].n_unique() > 1 else ""))
        ax.legend(fontsize="small")
    return fig


@register(
    "importances",
    title="Which hyperparameters matter — parameter importances (PED-ANOVA and fANOVA)",
    caption=(
        "Normalised importances from Optuna's get_param_importances on the search rebuilt from "
        "the results, for the study's metric and for test IS LL, with two evaluators "
        "(PED-ANOVA: what sets the best 10% of trials apart, conditional parameters included; "
        "fANOVA: the share of variance a random forest attributes, parameters every trial has "
        "only), each with a 95% interval from resampling the trials."
    ),
    prep=prep,
    absent="no study has two completed trials with a searched parameter",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    shown = df.select("study", "target", "evaluator", "rank", "param",
                      number("importance", 3).alias("importance"),
                      pl.format("[{}, {}]", number("low", 3), number("high", 3))
                      .alias("95% interval"),
                      "trials")
    if df["study"].n_unique() <= 1:
        shown = shown.drop("study")
    return save_figure(draw(df), out_dir, "importances") + write_table(df, shown, out_dir,
                                                                       "importances")
