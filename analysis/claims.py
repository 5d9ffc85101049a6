"""The claims section: a verdict on each of the paper's claims from the study's own numbers.

Claims (Guo et al. 2020), each checked within one scope — study, dataset, architecture and,
where the claim is about one objective, the KL estimator it was trained with:

- (a) IS LL orders VAE < Mix1 < Mix2 < Mix3 (Table 1): Mix1 − VAE (the VAE paired with Mix1 at
  every K), Mix2 − Mix1 and Mix3 − Mix2 at equal K; uniform π; all three must hold.
- (b) larger K is better, K = 100 → 500 (Figure 3): Mix_M(K = 500) − Mix_M(K = 100), same M, π.
- (c) π matters little (Figure 4): non-uniform π − uniform π, same M and K; "little" means the
  interval lies inside ±`PI_MARGIN` nats.
- (d) the bound ranks models as IS LL does: Spearman's ρ between the per-model means (over
  seeds) of the paper's bound −(RE + U) and of IS LL, with a Fisher-z interval; supported when
  its lower end exceeds `RANK_AGREEMENT`, contradicted when its upper end is below it.
- (e) the paper's bound (greedy) trains the best model by IS LL: X − greedy for every other
  estimator X present, same M, K, π; supported when greedy is better than each, contradicted
  when any X is better. A row lse − mc (ours) says which of the two alternatives is better.
- (f) the pseudo-input prior stays a mixture of distinct members (does not collapse, per
  estimator): the fraction of pseudo-mixture trials flagged collapsed (models.diagnostics,
  spread ratio < 0.05) with a Wilson 95% interval; supported when it lies below ½,
  contradicted when above.

Pairs share the seed; the interval is over seeds (t) with ≥ 3 pairs, else over test images,
conditional on the trained models — `analysis.claims_stats` states the method exactly. Every
row names its trials (``rows``: trial keys, in full in the CSV). A claim whose trials the study
lacks reads "no data".
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis import claims_stats as cs
from analysis.load import COMPLETED, Frames
from analysis.registry import register
from analysis.tables import write_table

PI_MARGIN = 1.0  # nats: a π effect smaller than this "matters little"
RANK_AGREEMENT = 0.5  # Spearman's ρ between bound and IS LL rankings
STATEMENTS = {
    "a": "IS LL orders VAE < Mix1 < Mix2 < Mix3",
    "b": "larger K is better (K = 100 → 500)",
    "c": f"π matters little (|Δ IS LL| < {PI_MARGIN:g} nat)",
    "d": f"the bound ranks models as IS LL does (Spearman ρ > {RANK_AGREEMENT:g})",
    "e": "the paper's bound (greedy) trains the best model by IS LL",
    "f": "the pseudo-input prior does not collapse",
}
SCOPE = ["study", "dataset", "arch"]
COLUMNS = ["claim", "statement", "scope", "comparison", "pairs", "difference", "ci_low",
           "ci_high", "method", "verdict", "rows"]


def _row(claim: str, scope: str, comparison: str, interval: cs.Interval | None,
         verdict: str) -> dict:
    iv = interval
    return {
        "claim": claim, "statement": STATEMENTS[claim], "scope": scope, "comparison": comparison,
        "pairs": iv.n_pairs if iv else 0, "difference": iv.mean if iv else None,
        "ci_low": iv.low if iv else None, "ci_high": iv.high if iv else None,
        "method": iv.method if iv else "", "verdict": verdict,
        "rows": ", ".join(iv.rows) if iv else "",
    }


def _pairs(a: pl.DataFrame, b: pl.DataFrame, on: list[str]) -> pl.DataFrame:
    """Trials of ``a`` and ``b`` equal on ``on``: key_a, key_b, ll_a, ll_b."""
    left = a.select(*on, pl.col("trial_key").alias("key_a"), pl.col("test_ll").alias("ll_a"))
    right = b.select(*on, pl.col("trial_key").alias("key_b"), pl.col("test_ll").alias("ll_b"))
    return left.join(right, on=on, nulls_equal=True)


def _scopes(df: pl.DataFrame, keys: list[str]):
    for values, part in df.group_by(keys, maintain_order=True):
        yield " · ".join(str(v) for v in values), part


def _claim_a(t: pl.DataFrame, ll: pl.DataFrame) -> list[dict]:
    rows = []
    for scope, part in _scopes(t, [*SCOPE, "kl_estimator"]):
        uniform = part.filter(pl.col("pi_uniform"))
        vae = part.filter(pl.col("prior") == "standard")

        def mix(m: int, frame: pl.DataFrame = uniform) -> pl.DataFrame:
            return frame.filter((pl.col("prior") == "pseudo_mixture") & (pl.col("M") == m))

        steps = [("Mix1 − VAE", _pairs(mix(1), vae, ["seed"]))]
        steps += [(f"Mix{m + 1} − Mix{m}", _pairs(mix(m + 1), mix(m), ["K", "seed"]))
                  for m in (1, 2)]
        for name, pairs in steps:
            iv = cs.paired(pairs, ll)
            rows.append(_row("a", scope, name, iv, cs.one_sided(iv, +1)))
    return rows


def _claim_b(t: pl.DataFrame, ll: pl.DataFrame) -> list[dict]:
    rows = []
    mixtures = t.filter(pl.col("prior") == "pseudo_mixture")
    for scope, part in _scopes(mixtures, [*SCOPE, "kl_estimator"]):
        pairs = _pairs(part.filter(pl.col("K") == 500), part.filter(pl.col("K") == 100),
                       ["M", "pi_label", "seed"])
        iv = cs.paired(pairs, ll)
        rows.append(_row("b", scope, "K=500 − K=100", iv, cs.one_sided(iv, +1)))
    return rows


def _claim_c(t: pl.DataFrame, ll: pl.DataFrame) -> list[dict]:
    rows = []
    mixtures = t.filter((pl.col("prior") == "pseudo_mixture") & (pl.col("M") > 1))
    for scope, part in _scopes(mixtures, [*SCOPE, "kl_estimator"]):
        pairs = _pairs(part.filter(~pl.col("pi_uniform")), part.filter(pl.col("pi_uniform")),
                       ["M", "K", "seed"])
        iv = cs.paired(pairs, ll)
        rows.append(_row("c", scope, "non-uniform π − uniform π", iv,
                         cs.equivalence(iv, PI_MARGIN)))
    return rows


def _claim_d(t: pl.DataFrame) -> list[dict]:
    rows = []
    for scope, part in _scopes(t.filter(pl.col("test_elbo_bound").is_not_null()),
                               [*SCOPE, "kl_estimator"]):
        models = part.group_by("label").agg(pl.col("test_elbo_bound").mean(),
                                             pl.col("test_ll").mean(), pl.col("trial_key"))
        if models.height < 3:
            continue
        rho, low, high = cs.spearman_interval(models["test_elbo_bound"].to_numpy(),
                                              models["test_ll"].to_numpy())
        verdict = (cs.SUPPORTED if low > RANK_AGREEMENT else cs.CONTRADICTED
                   if high < RANK_AGREEMENT else cs.INCONCLUSIVE)
        keys = tuple(sorted(k for ks in models["trial_key"].to_list() for k in ks))
        iv = cs.Interval(models.height, rho, low, high,
                         f"Spearman ρ over {models.height} models, Fisher-z", (), keys)
        rows.append(_row("d", scope, "ρ(bound, IS LL)", iv, verdict))
    return rows


def _claim_e(t: pl.DataFrame, ll: pl.DataFrame) -> list[dict]:
    rows = []
    mixtures = t.filter(pl.col("prior") == "pseudo_mixture")
    on = ["M", "K", "pi_label", "seed"]
    for scope, part in _scopes(mixtures, SCOPE):
        present = part["kl_estimator"].drop_nulls().unique().sort().to_list()
        greedy = part.filter(pl.col("kl_estimator") == "greedy")
        for other in [e for e in present if e != "greedy"]:
            iv = cs.paired(_pairs(part.filter(pl.col("kl_estimator") == other), greedy, on), ll)
            rows.append(_row("e", scope, f"{other} − greedy", iv, cs.one_sided(iv, -1)))
        if {"lse", "mc"} <= set(present):
            iv = cs.paired(_pairs(part.filter(pl.col("kl_estimator") == "lse"),
                                  part.filter(pl.col("kl_estimator") == "mc"), on), ll)
            side = iv.side() if iv else 0
            verdict = {1: "lse better", -1: "mc better"}.get(side, cs.INCONCLUSIVE)
            rows.append(_row("e", scope, "lse − mc (ours, not the paper's)", iv, verdict))
    return rows


def _claim_f(t: pl.DataFrame) -> list[dict]:
    rows = []
    flagged = t.filter((pl.col("prior") == "pseudo_mixture") & pl.col("collapsed").is_not_null())
    for scope, part in _scopes(flagged, [*SCOPE, "kl_estimator"]):
        n, k = part.height, int(part["collapsed"].sum())
        low, high = cs.wilson(k, n)
        verdict = (cs.SUPPORTED if high < 0.5 else cs.CONTRADICTED if low > 0.5
                   else cs.INCONCLUSIVE)
        spread = float(part["spread_ratio"].median())
        iv = cs.Interval(n, k / n, low, high, "Wilson interval of the fraction collapsed",
                         (), tuple(sorted(part["trial_key"].to_list())))
        rows.append(_row("f", scope, f"{k} of {n} collapsed (median spread ratio "
                         f"{spread:.3g})", iv, verdict))
    return rows


def prep(frames: Frames) -> pl.DataFrame:
    """One row per comparison; a claim the study has no trials for gets one "no data" row."""
    t = frames.trials.filter((pl.col("state") == COMPLETED) & pl.col("test_ll").is_not_null())
    if t.is_empty():
        return pl.DataFrame(schema={c: pl.String for c in COLUMNS})
    ll = (frames.test_ll.select("trial_key", "image", "log_likelihood")
          .filter(pl.col("trial_key").is_in(t["trial_key"].implode())).collect())
    rows = [*_claim_a(t, ll), *_claim_b(t, ll), *_claim_c(t, ll), *_claim_d(t),
            *_claim_e(t, ll), *_claim_f(t)]
    for claim in STATEMENTS:
        if not any(r["claim"] == claim for r in rows):
            rows.append(_row(claim, "", "the study has no trials for this comparison", None,
                             cs.NO_DATA))
    schema = {"claim": pl.String, "statement": pl.String, "scope": pl.String,
              "comparison": pl.String, "pairs": pl.Int64, "difference": pl.Float64,
              "ci_low": pl.Float64, "ci_high": pl.Float64, "method": pl.String,
              "verdict": pl.String, "rows": pl.String}
    return pl.DataFrame(rows, schema=schema).sort("claim", maintain_order=True)


def summary(df: pl.DataFrame) -> pl.DataFrame:
    """One verdict per claim and scope: `claims_stats.combine` of its comparisons (claim e:
    the X − greedy rows only)."""
    paper = df.filter(~pl.col("comparison").str.starts_with("lse − mc"))
    out = paper.group_by(["claim", "statement", "scope"], maintain_order=True).agg("verdict")
    combined = [cs.combine(list(v)) for v in out["verdict"].to_list()]
    return out.with_columns(pl.Series("verdict", combined, pl.String)).sort(
        "claim", maintain_order=True)


def _shown(df: pl.DataFrame) -> pl.DataFrame:
    def fmt(col: str) -> pl.Expr:
        return pl.col(col).round(3).cast(pl.String)

    n_rows = pl.col("rows").str.split(", ").list.len()
    return df.select(
        "claim", "scope", "comparison", "pairs",
        fmt("difference").fill_null("").alias("difference"),
        pl.format("[{}, {}]", fmt("ci_low"), fmt("ci_high")).fill_null("").alias("95% CI"),
        "method", "verdict",
        pl.when(pl.col("rows") == "").then(pl.lit(""))
        .otherwise(pl.format("{} trials: {}…", n_rows,
                             pl.col("rows").str.split(", ").list.first()))
        .alias("rows (all in claims.csv)"),
    )


def notes(df: pl.DataFrame) -> list[str]:
    counts = dict(summary(df).group_by("verdict").len().iter_rows())
    return [
        "Interval method: paired differences of IS LL (nats per image), pairs sharing the "
        "seed; with ≥ 3 pairs a Student-t interval over the pairs (covers training seeds); "
        "with fewer, a normal interval over the test images of the per-image differences "
        "averaged over the pairs — it covers test-set sampling of these trained models only, "
        "and a verdict from it also needs every pair to agree in sign.",
        "Verdicts by claim and scope: " + ", ".join(f"{n} {v}" for v, n in sorted(
            counts.items())) + ".",
        *[f"({r['claim']}) {r['statement']} — {r['scope'] or 'whole study'}: {r['verdict']}"
          for r in summary(df).iter_rows(named=True)],
    ]


@register(
    "claims",
    title="Claims of the paper — verdicts from this study",
    caption=(
        "Each claim (a)–(f) is tested within a study, dataset, architecture and, where it is "
        "about one objective, KL estimator. 'difference' is the mean paired difference (IS LL, "
        "nats; claim d: Spearman's ρ; claim f: the fraction of collapsed trials) with its 95% "
        "interval and method; 'rows' are the trials used (the CSV lists every key)."
    ),
    prep=prep,
    absent="no completed trial has an IS log-likelihood",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    paths = write_table(summary(df), summary(df), out_dir, "claims_summary")
    return paths + write_table(df, _shown(df), out_dir, "claims")

