"""The claims' comparisons at every epoch, on the validation MC ELBO (the statistics behind
`analysis.over_training`; docs/OVER_TRAINING.md).

**An epoch's value.** Nothing an epoch computes depends on ``max_epochs`` (docs/BUDGETS.md), so
epoch *e* of a run is the *e*-epoch run, and what an *e*-epoch run returns is its weights of the
epoch b(e) ≤ e with the lowest validation loss (the first strictly lowest:
`models.training.EarlyStopping`). Its value at *e* is ``val_elbo_mc`` of epoch b(e) — the
estimator-free −(RE + KL_MC) on the fixed validation images, at noise fixed per trial seed
(`models.training`). A run that stopped early returns the same at every later epoch of its
budget. At the budget's last epoch b(N) is the trial's best epoch: the model the claims section
scored.

**Comparisons** (`family_rows`): each comparison of `claims_design.design` (claims a, b, c, e,
e*, g, g*; claim d, a rank correlation of the test bound with the test IS LL, has no validation
counterpart) pairs the same trials as the claims section; per epoch, its per-seed difference
(`Comparison.seed_differences`) gives the mean, the t interval over seeds (95%; 90% for claim
c's TOST; the range with fewer than 3 seeds) and a verdict by the claims' own rules
(`claims_stats`: Holm over the claim's comparisons in the scope, the TOST at the study's margin
for c) — with the noise of the seeds only, since no per-image validation values are recorded.

**Claim (f)** (`collapse_rows`, the prior does not collapse): per epoch, every completed
pseudo-mixture trial of the scope is judged by `models.collapse_rule.collapse_state` on its
diagnostics of epoch b(e) (the largest spread ratio before b(e) as the earlier peak, as the
claims section does at the best epoch), giving the collapse rate with its interval clustered by
seed and its verdict (`claims_stats.clustered_rate`, `fraction_verdict`); the drawn line is the
spread ratio, its geometric mean over the seed's trials, with the t interval over seeds of its
log.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from analysis import claims_design as cd
from analysis import claims_stats as cs
from analysis.load import COMPLETED
from models.collapse_rule import COLLAPSED, HEALTHY, collapse_state

DIAGNOSTICS = ("val_elbo_mc", "spread_ratio", "resp_perplexity", "peak_before")


def returned(epochs: pl.LazyFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """Per completed trial row of ``frame`` and epoch e = 1 … its max_epochs: ``best_epoch``
    b(e) and `DIAGNOSTICS` at b(e) (``peak_before``: the largest spread ratio of the epochs
    before b(e)) — what the e-epoch run returns (module docstring); after its last recorded
    epoch a run that stopped early keeps its values. Null where the trial has no record."""
    recorded = (
        epochs.select("study", "trial_key", "epoch", "val_loss", "val_elbo_mc", "spread_ratio",
                      "resp_perplexity")
        .join(frame.lazy().select("study", "trial_key", "row"), on=["study", "trial_key"])
        .unique(["row", "epoch"], keep="last").sort("row", "epoch")
        .with_columns(
            # a new best: strictly below every earlier validation loss (EarlyStopping)
            (pl.col("val_loss") < pl.col("val_loss").cum_min().shift(1)).fill_null(
                pl.col("val_loss").is_not_null()).over("row").alias("new_best"),
            pl.col("spread_ratio").cum_max().shift(1).over("row").alias("peak_before"),
            pl.col("epoch").alias("best_epoch"))
        .with_columns(pl.when("new_best").then(pl.col(c)).otherwise(None).forward_fill()
                      .over("row") for c in ("best_epoch", *DIAGNOSTICS))
        .select("row", "epoch", "best_epoch", *DIAGNOSTICS)
    )
    budget = (frame.lazy().filter(pl.col("state") == COMPLETED)
              .select("row", pl.int_ranges(1, pl.col("max_epochs") + 1).alias("epoch"))
              .explode("epoch").drop_nulls("epoch"))
    return (budget.join(recorded, on=["row", "epoch"], how="left").sort("row", "epoch")
            .with_columns(pl.col("best_epoch", *DIAGNOSTICS).forward_fill().over("row"))
            .collect())


def matrix(values: pl.DataFrame, column: str, n_epochs: int, n_rows: int) -> np.ndarray:
    """(n_epochs, n_rows) of ``column`` (NaN where none)."""
    out = np.full((n_epochs, n_rows), np.nan)
    part = values.filter(pl.col(column).is_not_null() & (pl.col("epoch") <= n_epochs))
    out[part["epoch"].to_numpy() - 1, part["row"].to_numpy()] = part[column].to_numpy()
    return out


def _where(scope: str, budget: str) -> str:
    """The scope without its budget: the same for every budget of a comparison."""
    return scope.replace(f" · {budget}", "")


def _base(claim: str, name: str, scope: str, rows: pl.DataFrame, margin: float | None,
          configs: pl.Series) -> dict:
    budget = rows["budget"][0]
    return {"claim": claim, "comparison": name, "scope": scope, "budget": budget,
            "where": _where(scope, budget), "max_epochs": int(rows["max_epochs"].max()),
            "margin": margin, "configs": "\n".join(sorted(set(configs.to_list())))}


def family_rows(family: list[cd.Comparison], frame: pl.DataFrame, configs: pl.Series,
                 values: np.ndarray, found: np.ndarray, margin: float | None) -> list[dict]:
    """Per comparison of one claim and scope, per epoch 1 … N: mean, interval, sign, verdict."""
    rows_of = [np.unique(np.concatenate([c.pairs["row_a"].to_numpy(),
                                         c.pairs["row_b"].to_numpy()])) for c in family]
    n_epochs = int(frame["max_epochs"].to_numpy()[rows_of[0]].max())
    d = np.full((n_epochs, len(family), max(len(c.seeds) for c in family)), np.nan)
    for i, c in enumerate(family):
        d[:, i, : len(c.seeds)] = c.seed_differences(values[:n_epochs], found[:n_epochs])
    if margin is None:
        res = cs.one_sided_family(d, np.array([c.expected for c in family]))
        level = 0.95
    else:
        res = cs.equivalence_family(d, margin)
        level = 0.90
    low, high = cs.t_interval(res["mean"], res["se"], res["df"], level)
    few = res["n"] < cs.MIN_SEEDS
    finite = np.isfinite(d)
    low = np.where(few, np.where(finite, d, np.inf).min(-1), low)
    high = np.where(few, np.where(finite, d, -np.inf).max(-1), high)
    out = []
    for i, c in enumerate(family):
        base = _base(c.claim, c.name, c.scope, frame[rows_of[i].tolist()], margin,
                     configs[rows_of[i].tolist()])
        for e in range(n_epochs):
            n, code = int(res["n"][e, i]), int(res["code"][e, i])
            verdict = cs.VERDICTS[code]
            if c.claim == "e*" and code in (cs.CODE_SUPPORTED, cs.CODE_CONTRADICTED):
                verdict = "lse better" if code == cs.CODE_SUPPORTED else "mc better"
            mean = float(res["mean"][e, i]) if n else None
            out.append({**base, "epoch": e + 1, "seeds": n, "difference": mean,
                        "ci_low": float(low[e, i]) if n else None,
                        "ci_high": float(high[e, i]) if n else None,
                        "level": "range" if 0 < n < cs.MIN_SEEDS else f"{level:.0%}",
                        "sign": None if mean is None else int(np.sign(mean)),
                        "verdict": verdict})
    return out


def collapse_rows(frame: pl.DataFrame, configs: pl.Series, values: pl.DataFrame) -> list[dict]:
    """Claim (f) per scope (as the claims section) and epoch: the collapse rate's verdict and
    the spread ratio drawn (module docstring)."""
    mixtures = frame.filter((pl.col("state") == COMPLETED) & cd.PM)
    judged = values.join(mixtures.select("row", "seed", "warmup_epochs"), on="row")
    states = [collapse_state(s, p, b, w, k) for s, p, b, w, k in judged.select(
        "spread_ratio", "resp_perplexity", "best_epoch", "warmup_epochs", "peak_before"
    ).iter_rows()]
    judged = judged.with_columns(pl.Series("state", states, pl.String),
                                 pl.col("spread_ratio").log().alias("log_spread"))
    out = []
    for scope, part in cd.scopes(mixtures, [*cd.SCOPE, "kl_estimator"]):
        base = _base("f", "collapse rate (spread ratio drawn)", scope, part, None,
                     configs[part["row"].to_list()])
        per_epoch = judged.filter(pl.col("row").is_in(part["row"].implode()))
        for e in range(1, base["max_epochs"] + 1):
            at = per_epoch.filter(pl.col("epoch") == e)
            seeds = at.group_by("seed").agg(
                (pl.col("state") == COLLAPSED).sum().alias("k"),
                pl.col("state").is_in([COLLAPSED, HEALTHY]).sum().alias("n"),
                pl.col("log_spread").filter(pl.col("log_spread").is_finite()).mean())
            rate, _, low, high = cs.clustered_rate(seeds["k"].to_numpy(), seeds["n"].to_numpy())
            log_s = seeds["log_spread"].drop_nulls().to_numpy()
            n_s, mean_s, se_s = cs.seed_summary(log_s)
            s_low, s_high = cs.t_interval(mean_s, se_s, n_s - 1.0)
            judged_seeds = int((seeds["n"] > 0).sum())
            out.append({**base, "epoch": e, "seeds": judged_seeds,
                        "difference": None if math.isnan(rate) else rate,
                        "ci_low": None if math.isnan(low) else low,
                        "ci_high": None if math.isnan(high) else high,
                        "level": "95% (clustered by seed)", "sign": None,
                        "verdict": cs.VERDICTS[int(cs.fraction_verdict(low, high))],
                        **{k: float(np.exp(v)) if n_s and np.isfinite(v) else None
                           for k, v in (("spread", mean_s), ("spread_low", s_low),
                                        ("spread_high", s_high))}})
    return out
