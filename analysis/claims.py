"""The claims section: a verdict on each of the paper's claims from the study's training runs.

Claims (Guo et al. 2020), each checked within one scope — study, dataset, architecture and,
where the claim is about one objective, the KL estimator it was trained with. Every comparison
pairs trials equal on every other setting (`analysis.claims_design`); its unit is the training
run — one difference per seed, nuisance settings averaged within the seed — and its statistics
are `analysis.claims_stats`' (t over seeds, Holm over the claim's family, TOST for (c)):

- (a) IS LL orders VAE < Mix1 < Mix2 < Mix3 (Table 1): Mix1 − VAE (Mix1 averaged over its K
  within a seed), Mix2 − Mix1 and Mix3 − Mix2 (at equal K, averaged over K); uniform π; a
  family of three, all must hold.
- (b) larger K is better, K = 100 → 500 (Figure 3): Mix_M(K = 500) − Mix_M(K = 100), same M
  and π, averaged over them within a seed.
- (c) π matters little (Figure 4): one comparison per M and non-uniform π, π − uniform π at
  the same K; equivalence within ± the study's margin (``[claims] pi_margin`` in the study
  file, default `DEFAULT_PI_MARGIN` nats, read from study.json by `analysis.load`).
- (d) the bound ranks models as IS LL does: over the pseudo-mixture models only (the VAE's
  "bound" is its exact ELBO), Spearman's ρ between the paper's bound −(RE + U) and IS LL
  within each seed; the t interval over seeds of their Fisher z; supported when it lies above
  `RANK_AGREEMENT`, contradicted when below.
- (e) the paper's bound (greedy) trains the best model by IS LL: X − greedy for every other
  estimator X (family), same M, K, π, averaged over them within a seed. A row lse − mc (ours,
  its own family) says which alternative is better.
- (f) the pseudo-input prior does not collapse (per estimator): the fraction of completed
  pseudo-mixture trials collapsed by `models.collapse_rule` (applied to the recorded
  diagnostics), Wilson 95% interval; supported below ½, contradicted above. Each trial is one
  training run; the fraction describes these runs.

Every row names its trials (``rows``, in full in the CSV), its expected and found pairs and the
missing trials with their state. A claim whose trials the study lacks reads "no data". No
verdict comes from the test images of one or two trained models: with fewer than 3 seeds a
comparison shows the mean and range of its seeds (descriptive) and reads ``FEW_SEEDS``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from analysis import claims_design as cd
from analysis import claims_stats as cs
from analysis.load import COMPLETED, DEFAULT_PI_MARGIN, Frames
from analysis.registry import register
from analysis.tables import write_table

RANK_AGREEMENT = 0.5  # Spearman's ρ between bound and IS LL rankings
REQUIRED = {"a": 3}  # claim (a) is a chain of three steps: supported only with all three
STATEMENTS = {
    "a": "IS LL orders VAE < Mix1 < Mix2 < Mix3",
    "b": "larger K is better (K = 100 → 500)",
    "c": "π matters little (|Δ IS LL| < the margin)",
    "d": f"the bound ranks pseudo-mixture models as IS LL does (Spearman ρ > "
         f"{RANK_AGREEMENT:g})",
    "e": "the paper's bound (greedy) trains the best model by IS LL",
    "f": "the pseudo-input prior does not collapse",
}
SCHEMA = {"claim": pl.String, "statement": pl.String, "scope": pl.String,
          "comparison": pl.String, "seeds": pl.Int64, "difference": pl.Float64,
          "ci_low": pl.Float64, "ci_high": pl.Float64, "p": pl.String, "method": pl.String,
          "verdict": pl.String, "pairs": pl.String, "missing": pl.String, "rows": pl.String}


def _row(claim: str, scope: str, comparison: str, **kw: object) -> dict:
    row = dict.fromkeys(SCHEMA)
    row.update(claim=claim, statement=STATEMENTS[claim[0]], scope=scope, comparison=comparison,
               seeds=0, method="", p="", pairs="", missing="", rows="")
    row.update(kw)
    return row


def _pi_margin(frames: Frames, scope: str) -> float:
    study = scope.split(" · ")[0]
    match = frames.studies.filter(pl.col("study") == study)
    return float(match["pi_margin"][0]) if match.height else DEFAULT_PI_MARGIN


def _family_rows(family: list[cd.Comparison], frame: pl.DataFrame, values: np.ndarray,
                 found: np.ndarray, margin: float | None) -> list[dict]:
    width = max(len(c.seeds) for c in family)
    d = np.full((len(family), width), np.nan)
    for i, c in enumerate(family):
        d[i, : len(c.seeds)] = c.seed_differences(values, found)
    if margin is None:
        res = cs.one_sided_family(d, np.array([c.expected for c in family]))
        p_text = [f"p_sup {a:.3g}, p_con (Holm) {b:.3g}" for a, b in
                  zip(res["p_sup"], res["p_con_holm"], strict=True)]
        level = 0.95
    else:
        res = cs.equivalence_family(d, margin)
        p_text = [f"p_TOST {a:.3g}, p_outside (Holm) {b:.3g}" for a, b in
                  zip(res["p_eq"], res["p_out_holm"], strict=True)]
        level = 0.90
    low, high = cs.t_interval(res["mean"], res["se"], res["n"], level)
    rows = []
    for i, c in enumerate(family):
        n = int(res["n"][i])
        di = d[i][np.isfinite(d[i])]
        descriptive = 0 < n < cs.MIN_SEEDS
        method = (f"descriptive (n seeds < {cs.MIN_SEEDS}): mean and range over seeds"
                  if descriptive else
                  f"t over {n} seeds, {level:.0%} interval; Holm over {len(family)} "
                  "comparison(s)" + (f"; TOST, margin ±{margin:g} nat" if margin else ""))
        verdict = cs.VERDICTS[int(res["code"][i])]
        if c.claim == "e*" and res["code"][i] in (cs.CODE_SUPPORTED, cs.CODE_CONTRADICTED):
            verdict = "lse better" if res["code"][i] == cs.CODE_SUPPORTED else "mc better"
        found_pairs = int((found[c.pairs["row_a"].to_numpy()]
                           & found[c.pairs["row_b"].to_numpy()]).sum())
        rows.append(_row(
            c.claim, c.scope, c.name, seeds=n,
            difference=float(res["mean"][i]) if n else None,
            ci_low=float(di.min() if descriptive else low[i]) if n else None,
            ci_high=float(di.max() if descriptive else high[i]) if n else None,
            p="" if descriptive or not n else p_text[i], method=method, verdict=verdict,
            pairs=f"{found_pairs} of {c.pairs.height} found", missing=", ".join(c.missing(frame)),
            rows=", ".join(c.trial_keys())))
    return rows


def _claim_d(frame: pl.DataFrame) -> list[dict]:
    rows = []
    bound = frame["test_elbo_bound"].to_numpy().astype(float)
    ll = frame["test_ll"].to_numpy().astype(float)
    ok = frame["found"].to_numpy() & np.isfinite(bound)
    for rd in cd.rank_design(frame):
        idx = np.where(rd.rows >= 0, rd.rows, 0)
        present = (rd.rows >= 0) & ok[idx]
        x = np.where(present, bound[idx], np.nan).T  # (seeds, models)
        y = np.where(present, ll[idx], np.nan).T
        rho = cs.spearman_rows(x, y)
        res = cs.rank_agreement(rho, RANK_AGREEMENT)
        n = int(res["n"])
        finite = rho[np.isfinite(rho)]
        descriptive = 0 < n < cs.MIN_SEEDS
        keys = frame.filter(pl.col("row").is_in(rd.rows[rd.rows >= 0].tolist()))
        lost = keys.filter(~pl.col("found"))
        rows.append(_row(
            "d", rd.scope, f"ρ(bound, IS LL) over {len(rd.models)} pseudo-mixture models",
            seeds=n, difference=float(res["rho"]) if n else None,
            ci_low=float(finite.min() if descriptive else res["low"]) if n else None,
            ci_high=float(finite.max() if descriptive else res["high"]) if n else None,
            method=("descriptive (n seeds < 3): mean and range of the per-seed ρ" if descriptive
                    else f"Spearman ρ within each seed; t over {n} seeds of Fisher z, 95%"),
            verdict=cs.VERDICTS[int(res["claim"])],
            pairs=f"{int(np.isfinite(rho).sum())} of {len(rd.seeds)} seeds complete",
            missing=", ".join(f"{k} ({s})" for k, s in lost.select("trial_key", "state")
                              .iter_rows()),
            rows=", ".join(sorted(keys["trial_key"].to_list()))))
    return rows


def _claim_f(t: pl.DataFrame) -> list[dict]:
    rows = []
    mixtures = t.filter(pl.col("prior") == "pseudo_mixture")
    undecided = (mixtures.filter(pl.col("collapsed").is_null()
                                 & pl.col("spread_ratio").is_not_null())
                 .group_by([*cd.SCOPE, "kl_estimator"]).len())
    flagged = mixtures.filter(pl.col("collapsed").is_not_null())
    for scope, part in cd.scopes(flagged, [*cd.SCOPE, "kl_estimator"]):
        n, k = part.height, int(part["collapsed"].sum())
        early = undecided.join(part.select(*cd.SCOPE, "kl_estimator").head(1),
                               on=[*cd.SCOPE, "kl_estimator"], nulls_equal=True)["len"].sum()
        low, high = cs.wilson(k, n)
        spread = float(part["spread_ratio"].median())
        perplexity = float(part["resp_perplexity"].median())
        rows.append(_row(
            "f", scope, f"{k} of {n} collapsed (median spread ratio {spread:.3g}, "
            f"perplexity/K {perplexity:.3g})"
            + (f"; {early} undecided (best epoch before the warm-up ended)" if early else ""),
            seeds=part["seed"].n_unique(),
            difference=k / n, ci_low=float(low), ci_high=float(high),
            method="Wilson 95% interval of the fraction of training runs collapsed",
            verdict=cs.VERDICTS[int(cs.fraction_verdict(k, n))], pairs=f"{n} trials",
            rows=", ".join(sorted(part["trial_key"].to_list()))))
    return rows


def prep(frames: Frames) -> pl.DataFrame:
    """One row per comparison; a claim the study has no trials for gets one "no data" row.
    Raises `claims_design.DesignError` (one line) on a pairing that is not one-to-one."""
    frame = cd.design_frame(frames.trials)
    if not frame["found"].any():
        return pl.DataFrame(schema=SCHEMA)
    values = frame["test_ll"].to_numpy().astype(float)
    found = frame["found"].to_numpy()
    comparisons = cd.design(frame)
    families: dict[tuple[str, str], list[cd.Comparison]] = {}
    for c in comparisons:
        families.setdefault((c.claim, c.scope), []).append(c)
    rows = []
    for (claim, scope), family in families.items():
        margin = _pi_margin(frames, scope) if claim == "c" else None
        rows += _family_rows(family, frame, values, found, margin)
    rows += _claim_d(frame)
    rows += _claim_f(frame.filter(pl.col("state") == COMPLETED))
    for claim in STATEMENTS:
        if not any(r["claim"] == claim for r in rows):
            rows.append(_row(claim, "", "the study has no trials for this comparison",
                             verdict=cs.NO_DATA))
    for r in rows:
        if r["claim"] == "c":
            r["statement"] = f"π matters little (|Δ IS LL| < {_pi_margin(frames, r['scope']):g}"\
                             " nat)"
    order = {c: i for i, c in enumerate([*STATEMENTS, "e*"])}
    rows.sort(key=lambda r: order[r["claim"]])
    return pl.DataFrame(rows, schema=SCHEMA)


def claim_verdict(verdicts: list[str]) -> str:
    """A claim from its comparisons' verdicts (`claims_stats`: contradicted if any is —
    Holm-controlled; supported if all are; FEW_SEEDS when none had 3 seeds)."""
    known = [v for v in verdicts if v != cs.NO_DATA]
    if not known:
        return cs.NO_DATA
    if cs.CONTRADICTED in known:
        return cs.CONTRADICTED
    if len(known) == len(verdicts) and all(v == cs.SUPPORTED for v in known):
        return cs.SUPPORTED
    if all(v == cs.FEW_SEEDS for v in known):
        return cs.FEW_SEEDS
    return cs.INCONCLUSIVE


def summary(df: pl.DataFrame) -> pl.DataFrame:
    """One verdict per claim and scope (claim e: the X − greedy rows only)."""
    paper = df.filter(pl.col("claim") != "e*")
    out = paper.group_by(["claim", "statement", "scope"], maintain_order=True).agg("verdict")
    combined = []
    for claim, verdicts in zip(out["claim"], out["verdict"].to_list(), strict=True):
        verdict = claim_verdict(list(verdicts))
        if verdict == cs.SUPPORTED and len(verdicts) < REQUIRED.get(claim, 0):
            verdict = cs.INCONCLUSIVE  # a chain with a missing step (cs.partial_claim)
        combined.append(verdict)
    return out.with_columns(pl.Series("verdict", combined, pl.String))


def _shown(df: pl.DataFrame) -> pl.DataFrame:
    def fmt(col: str) -> pl.Expr:
        return pl.col(col).round(3).cast(pl.String)

    n_rows = pl.col("rows").str.split(", ").list.len()
    return df.select(
        "claim", "scope", "comparison", "seeds",
        fmt("difference").fill_null("").alias("difference"),
        pl.format("[{}, {}]", fmt("ci_low"), fmt("ci_high")).fill_null("").alias("interval"),
        "p", "method", "verdict", "pairs",
        pl.when(pl.col("missing") == "").then(pl.lit("")).otherwise(pl.col("missing"))
        .str.slice(0, 120).alias("missing (all in claims.csv)"),
        pl.when(pl.col("rows") == "").then(pl.lit(""))
        .otherwise(pl.format("{} trials: {}…", n_rows,
                             pl.col("rows").str.split(", ").list.first()))
        .alias("rows (all in claims.csv)"),
    )


def notes(df: pl.DataFrame) -> list[str]:
    counts = dict(summary(df).group_by("verdict").len().iter_rows())
    return [
        "Method: the unit is a training run. Each comparison pairs trials equal on every "
        "setting but the compared one (seed included) and takes one difference per seed "
        "(nuisance settings such as K averaged within the seed; a seed missing a pair is "
        "dropped and its trials named). With ≥ 3 seeds: Student's t over the seeds; claim (c) "
        "by two one-sided tests (TOST) against the study's margin. A claim's comparisons are "
        "one family: a comparison is 'contradicted' only after Holm's correction over the "
        "family (family-wise level 5%, two-sided), and the claim is 'supported' only when "
        "every comparison is (an intersection–union test). With fewer than 3 seeds a "
        "comparison is shown as mean and range (descriptive) and gets no verdict. No verdict "
        "comes from the test images of one trained model (that covers test-set noise only). "
        "False-verdict rates of this machinery on simulated null studies: "
        "tests/analysis/test_calibration.py.",
        "Verdicts by claim and scope: " + ", ".join(f"{n} {v}" for v, n in sorted(
            counts.items())) + ".",
        *[f"({r['claim']}) {r['statement']} — {r['scope'] or 'whole study'}: {r['verdict']}"
          for r in summary(df).iter_rows(named=True)],
    ]


@register(
    "claims",
    title="Claims of the paper — verdicts over the training runs of this study",
    caption=(
        "Each claim (a)–(f) is tested within a study, dataset, architecture and, where it is "
        "about one objective, KL estimator. 'difference' is the mean over seeds of the paired "
        "difference (IS LL, nats; claim d: Spearman's ρ; claim f: the fraction of collapsed "
        "runs) with its interval over seeds (95%; 90% for the TOST of claim c; the range for "
        "a descriptive row) and method; 'pairs' expected vs found, 'missing' the trials not "
        "found with their state, 'rows' the trials used (the CSV lists all)."
    ),
    prep=prep,
    absent="no completed trial has an IS log-likelihood",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    paths = write_table(summary(df), summary(df), out_dir, "claims_summary")
    return paths + write_table(df, _shown(df), out_dir, "claims")
