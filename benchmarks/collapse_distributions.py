"""The measured distributions behind the collapse rule (models.collapse_rule): per KL estimator,
quantiles of the per-epoch validation ``spread_ratio`` and ``resp_perplexity`` of a study's
pseudo-mixture trials, before and after the warm-up, and how many epochs the rule flags.

    .venv/bin/python benchmarks/collapse_distributions.py STUDY_DIR [STUDY_DIR ...]

Reads STUDY/trials/*/epochs.parquet and config.json (read-only; trials still running are
read as far as they got) and prints one JSON object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

from models.collapse_rule import COLLAPSE_PERPLEXITY, COLLAPSE_SPREAD, is_collapsed

QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)


def epochs_of(study: Path) -> pl.DataFrame:
    frames = []
    for trial in sorted((study / "trials").glob("*/epochs.parquet")):
        config = json.loads((trial.parent / "config.json").read_text())
        if config.get("prior") != "pseudo_mixture":
            continue
        frames.append(pl.read_parquet(trial).select("epoch", "spread_ratio", "resp_perplexity")
                      .with_columns(pl.lit(config["kl_estimator"]).alias("kl_estimator"),
                                    pl.lit(int(config["warmup_epochs"])).alias("warmup"),
                                    pl.lit(trial.parent.name).alias("trial"),
                                    pl.lit(study.name).alias("study")))
    return pl.concat(frames) if frames else pl.DataFrame()


def _q(values: np.ndarray) -> dict[str, float]:
    return {f"q{int(q * 100):02d}": round(float(np.quantile(values, q)), 4) for q in QUANTILES}


def summarise(df: pl.DataFrame) -> dict:
    out: dict = {"rule": {"spread_below": COLLAPSE_SPREAD, "perplexity_above": COLLAPSE_PERPLEXITY}}
    for (est,), part in df.group_by(["kl_estimator"], maintain_order=True):
        after = part.filter(pl.col("epoch") >= pl.col("warmup"))
        before = part.filter(pl.col("epoch") < pl.col("warmup"))
        flags = [is_collapsed(s, p, e, w) for s, p, e, w in
                 after.select("spread_ratio", "resp_perplexity", "epoch", "warmup").iter_rows()]
        out[est] = {
            "trials": part["trial"].n_unique(), "epochs_after_warmup": after.height,
            "after_warmup": {"spread_ratio": _q(after["spread_ratio"].to_numpy()),
                             "resp_perplexity": _q(after["resp_perplexity"].to_numpy())},
            "before_warmup": {"spread_ratio": _q(before["spread_ratio"].to_numpy()),
                              "resp_perplexity": _q(before["resp_perplexity"].to_numpy())}
            if before.height else None,
            "epochs_flagged_collapsed": int(sum(bool(f) for f in flags)),
            "spread_below_only": int(((after["spread_ratio"] < COLLAPSE_SPREAD)
                                      & (after["resp_perplexity"] <= COLLAPSE_PERPLEXITY)).sum()),
        }
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    df = pl.concat([epochs_of(Path(a)) for a in argv], how="diagonal_relaxed")
    print(json.dumps(summarise(df), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
