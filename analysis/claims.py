"""The claims section: a verdict on each of the paper's claims from the study's training runs.

Claims (Guo et al. 2020), each checked within one scope — study, dataset, architecture,
**budget** (max epochs, training images, warm-up, IS samples, test images: a study holding
several budgets gets one verdict per budget, never a pooled one) and, where the claim is about
one objective, the KL estimator it was trained with. Every comparison pairs trials equal on
every other setting (`analysis.claims_design`); its unit is the training run — one difference
per seed, nuisance settings averaged within the seed — and its standard error adds the shared
test images' part to the t over seeds (`analysis.claims_noise`); the verdicts are
`analysis.claims_stats`' (Holm over the claim's family, TOST for (c)); the rows are built by
`analysis.claims_rows`. docs/VERDICTS.md states every method.

- (a) IS LL orders VAE < Mix1 < Mix2 < Mix3 (Table 1): Mix1 − VAE, Mix2 − Mix1, Mix3 − Mix2
  (averaged over K within a seed); uniform π; a family of three, all must hold; beside each
  the published effect and a minimum-effect test (`analysis.claims_paper`).
- (b) larger K is better, K = 100 → 500 (Figure 3), with its minimum-effect test.
- (c) π matters little (Figure 4): π − uniform π per M and π; equivalence within ± the
  study's margin (``[claims] pi_margin``, default `DEFAULT_PI_MARGIN`); the smallest margin
  the data would support is shown.
- (d) the bound ranks models as IS LL does (Spearman ρ within a seed, t over seeds of Fisher
  z), led by the paper's objective (greedy); other estimators are d* (ours).
- (e) the paper's bound (greedy) trains the best model: X − greedy; lse − mc is e* (ours).
- (f) the pseudo-input prior does not collapse (per estimator): the rate of collapsed runs
  (`models.collapse_rule.collapse_state`, with the per-epoch record: "not yet spread" is
  neither), Wilson interval clustered by seed; supported only below `claims_stats.LOW_RATE`.
- (g) GMMpVAE (M > 1, the paper's bound) beats VampPrior (M = 1, `mc`) at the same K and the
  VAE; with our `lse` on the GMMpVAE side as g* (ours).

Every row names its trials (``rows``, in full in the CSV), its expected and found pairs and the
missing trials with their state. A claim whose trials the study lacks reads "no data". With
fewer than 3 seeds a comparison shows the mean and range of its seeds (descriptive) and reads
``FEW_SEEDS``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analysis import claims_design as cd
from analysis import claims_rows as cr
from analysis import claims_stats as cs
from analysis.load import COMPLETED, DEFAULT_PI_MARGIN, Frames
from analysis.registry import register
from analysis.tables import write_table

RANK_AGREEMENT = cr.RANK_AGREEMENT
REQUIRED = {"a": 3}  # claim (a) is a chain of three steps: supported only with all three
STATEMENTS = cr.STATEMENTS
SCHEMA = cr.SCHEMA


def study_setting(frames: Frames, scope: str, column: str, default: float | None
                   ) -> float | None:
    study = scope.split(" · ")[0]
    match = frames.studies.filter(pl.col("study") == study)
    if not match.height or column not in match.columns or match[column][0] is None:
        return default
    return float(match[column][0])


def prep(frames: Frames) -> pl.DataFrame:
    """One row per comparison; a claim the study has no trials for gets one "no data" row.
    Raises `claims_design.DesignError` (one line) on a pairing that is not one-to-one."""
    frame = cd.design_frame(frames.trials)
    if not frame["found"].any():
        return pl.DataFrame(schema=SCHEMA)
    values = frame["test_ll"].to_numpy().astype(float)
    found = frame["found"].to_numpy()
    images = cr.images_matrix(frames.test_ll, frame)
    families: dict[tuple[str, str], list[cd.Comparison]] = {}
    for c in cd.design(frame):
        families.setdefault((c.claim, c.scope), []).append(c)
    rows = []
    for (claim, scope), family in families.items():
        margin = study_setting(frames, scope, "pi_margin", DEFAULT_PI_MARGIN) \
            if claim == "c" else None
        rows += cr.family_rows(family, frame, values, found, images, margin,
                               study_setting(frames, scope, "smallest_effect", None))
    rows += cr.claim_d(frame)
    rows += cr.claim_f(frame.filter(pl.col("state") == COMPLETED))
    for claim in STATEMENTS:
        if not any(r["claim"] == claim for r in rows):
            rows.append(cr.row(claim, "", "the study has no trials for this comparison",
                               verdict=cs.NO_DATA))
    for r in rows:
        if r["claim"] == "c" and r["scope"]:
            margin = study_setting(frames, r["scope"], "pi_margin", DEFAULT_PI_MARGIN)
            r["statement"] = f"π matters little (|Δ IS LL| < {margin:g} nat)"
    order = {c: i for i, c in enumerate(["a", "b", "c", "d", "d*", "e", "e*", "f", "g", "g*"])}
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
    """One verdict per claim and scope (the scope names the budget; claim e: the X − greedy
    rows only — e* is a two-sided row of its own)."""
    paper = df.filter(pl.col("claim") != "e*")
    out = paper.group_by(["claim", "statement", "scope", "budget"], maintain_order=True
                         ).agg("verdict")
    combined = []
    for claim, verdicts in zip(out["claim"], out["verdict"].to_list(), strict=True):
        verdict = claim_verdict(list(verdicts))
        if verdict == cs.SUPPORTED and len(verdicts) < REQUIRED.get(claim, 0):
            verdict = cs.INCONCLUSIVE  # a chain with a missing step (cs.partial_claim)
        combined.append(verdict)
    return out.with_columns(pl.Series("verdict", combined, pl.String))


def _fmt(col: str, digits: int = 3) -> pl.Expr:
    return pl.col(col).round(digits).cast(pl.String)


def _shown(df: pl.DataFrame) -> pl.DataFrame:
    n_rows = pl.col("rows").str.split(", ").list.len()
    return df.select(
        "claim", "scope", "comparison", "epochs_run", "seeds",
        _fmt("difference").fill_null("").alias("difference"),
        pl.format("[{}, {}]", _fmt("ci_low"), _fmt("ci_high")).fill_null("").alias("interval"),
        "verdict",
        pl.when(pl.col("paper_effect").is_not_null())
        .then(pl.format("{} ({})", _fmt("paper_effect", 2), pl.col("paper_source")))
        .otherwise(pl.col("paper_source")).fill_null("").alias("paper's effect"),
        pl.col("min_effect").alias("minimum-effect test"),
        pl.format("{} (seeds {}, images {}; df {})", _fmt("se"), _fmt("se_seeds"),
                  _fmt("se_images").fill_null("–"), _fmt("df", 1)).fill_null("")
        .alias("se (components)"),
        pl.when(pl.col("power").is_not_null()).then(
            pl.format("{}% at {}", (pl.col("power") * 100).round(0).cast(pl.Int64),
                      pl.col("power_at").str.split(";").list.first())).otherwise(pl.lit(""))
        .alias("power"),
        pl.col("seeds_needed").alias("seeds for 80% power"),
        _fmt("smallest_margin").fill_null("").alias("smallest margin supported"),
        "p", "method", "pairs",
        pl.when(pl.col("missing") == "").then(pl.lit("")).otherwise(pl.col("missing"))
        .str.slice(0, 120).alias("missing (all in claims.csv)"),
        pl.when(pl.col("rows") == "").then(pl.lit(""))
        .otherwise(pl.format("{} trials: {}…", n_rows,
                             pl.col("rows").str.split(", ").list.first()))
        .alias("rows (all in claims.csv)"),
    )


def _number(value: float | None, spec: str = ".3g") -> str:
    return "–" if value is None else format(value, spec)


def noise_lines(df: pl.DataFrame) -> list[str]:
    """Per comparison with an interval: its variance components; for an undecided one also the
    power at the reference effect (or the margin) and the seeds that would decide it."""
    lines = []
    for r in df.filter(pl.col("se").is_not_null()).iter_rows(named=True):
        line = (f"({r['claim']}) {r['comparison']} — {r['scope']} (epochs run "
                f"{r['epochs_run'] or '?'}): Δ {r['difference']:+.3g} [{r['ci_low']:.3g}, "
                f"{r['ci_high']:.3g}], {r['verdict']}; se {r['se']:.3g} = √(seeds "
                f"{r['se_seeds']:.3g}² + test images {_number(r['se_images'])}²), df "
                f"{r['df']:.1f}; per-seed sd {r['seed_sd']:.3g}, per-image sd of the paired "
                f"difference {_number(r['image_sd'])} (test-image effect sd "
                f"{_number(r['image_effect_sd'])}; IS noise not recorded apart: inside the "
                "per-image residual)")
        if r["claim"] in cr.MIN_EFFECT_CLAIMS:
            paper = ("not reported" if r["paper_effect"] is None else
                     f"{r['paper_effect']:+.3g} ({r['paper_source']})")
            line += f"; paper's effect {paper}; minimum-effect test: {r['min_effect']}"
        if r["smallest_margin"] is not None:
            line += f"; the smallest margin the TOST would support: {r['smallest_margin']:.3g} nat"
        if r["verdict"] not in (cs.SUPPORTED, cs.CONTRADICTED) and r["power"] is not None:
            line += (f"; power {r['power']:.0%} for {r['power_at']}; seeds for 80% power: "
                     f"{r['seeds_needed']}")
        lines.append(line + ".")
    return lines


def notes(df: pl.DataFrame) -> list[str]:
    counts = dict(summary(df).group_by("verdict").len().iter_rows())
    return [
        "Method (docs/VERDICTS.md): the unit is a training run, and a verdict holds at the "
        "budget its scope names (max epochs, training images, warm-up, IS samples, test "
        "images; 'early training' when max epochs < the paper's warm-up of "
        f"{cd.PAPER_WARMUP_EPOCHS}): a study with several budgets gets one verdict per budget. "
        "Each comparison pairs trials equal on every setting but the compared one (seed "
        "included) and takes one difference per seed (nuisance settings such as K averaged "
        "within the seed). Its standard error adds to the t over seeds the part of the shared "
        "test images (seeds × images ANOVA of the per-image paired differences, Satterthwaite "
        "df). Claim (c) by two one-sided tests (TOST) against the study's margin; a claim's "
        "comparisons are one family (Holm for 'contradicted'; 'supported' only when every "
        "comparison is). Claims (a), (b), (g) also meet the published effect (or the study's "
        "smallest effect of interest): 'the paper's gain is excluded' when the interval's "
        "upper end lies below it (Holm over the family). Power: at the seed sd pooled over "
        "the claim's family and the comparison's test-image variance. With fewer than 3 seeds "
        "a comparison is descriptive. Claim (f) is supported only when the upper end of the "
        f"collapse rate's interval (clustered by seed) is below {cs.LOW_RATE:.0%}. Rows marked "
        "'ours' (d*, e*, g*) are questions the paper did not ask. Calibration on simulated "
        "studies at the noise our studies show: tests/analysis/test_calibration.py.",
        "Verdicts by claim and scope: " + ", ".join(f"{n} {v}" for v, n in sorted(
            counts.items())) + ".",
        *[f"({r['claim']}) {r['statement']} — {r['scope'] or 'whole study'}: {r['verdict']}"
          for r in summary(df).iter_rows(named=True)],
        *noise_lines(df),
    ]


@register(
    "claims",
    title="Claims of the paper — verdicts over the training runs of this study",
    caption=(
        "Each claim (a)–(g) is tested within a study, dataset, architecture, budget (named in "
        "the scope: max epochs, training images, warm-up, IS samples, test images; 'early "
        "training' far from the paper's protocol) and, where it is about one objective, KL "
        "estimator. 'difference' is the mean over seeds of the paired difference (IS LL, "
        "nats; claim d: Spearman's ρ; claim f: the rate of collapsed runs) with its interval "
        "over seeds and test images (95%; 90% for the TOST of claim c; the range for a "
        "descriptive row); the paper's effect and the minimum-effect test beside it; the "
        "standard error with its components; the power and the seeds 80% power needs; "
        "'pairs' expected vs found, 'missing' the trials not found with their state, 'rows' "
        "the trials used (the CSV lists all, with every number unrounded)."
    ),
    prep=prep,
    verdicts=True,
    absent="no completed trial has an IS log-likelihood",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    paths = write_table(summary(df), summary(df), out_dir, "claims_summary")
    return paths + write_table(df, _shown(df), out_dir, "claims")
