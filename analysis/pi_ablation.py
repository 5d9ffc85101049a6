"""π as a continuous ablation: test IS LL against how even the mixture weights are, per M.

The paper's Figure 4 compares a few hand-picked π; an open search draws π all over the simplex
(one per trial), so the report asks Figure 4's question of every completed pseudo-mixture trial
with M ≥ 2: does IS LL change across the simplex?

**The one-number summary of π** is its entropy relative to uniform, h(π) = −Σ π_m ln π_m / ln M
∈ [0, 1] (1: uniform; 0: one component takes all). Why not the largest weight (Figure 4's
order): the components of the pseudo-mixture are exchangeable, so a summary must not depend on
their order — both qualify — but the largest weight ignores how the rest is split (for M = 3,
(0.6, 0.2, 0.2) and (0.6, 0.38, 0.02) get the same number), while the entropy reads every
weight and is on the same [0, 1] scale for every M.

**The smooth fit and its band**: ordinary least squares of IS LL on a polynomial in h —
quadratic with at least `QUADRATIC_FROM` trials, a line with at least 3, none with fewer (a
quadratic on fewer trials swings wildly between resamples) —
and the pointwise 95% confidence band of the fitted mean, ŷ(h) ± t_{0.975, n−p} s √(x(h)ᵀ
(XᵀX)⁻¹ x(h)) (p coefficients, s² the residual variance).

**Claim (c)'s question** — does IS LL change across the simplex by more than the study's margin
(``[claims] pi_margin``)? — is asked of the fit: its *span* is the largest minus the smallest
fitted value over the observed range of h, with a 95% interval from refitting on trials
resampled with replacement (`N_BOOT`, seeded). The answer is a **description**, not a verdict,
wherever the trials also differ in other settings (an open search: architecture, K, learning
rate… vary with π, so the fit mixes their effects into π's) and each configuration is a single
training run. A **verdict** needs replicates — trials equal in every setting but π, over
≥ 3 seeds —, which is the claims section's design: where it has claim (c) comparisons for this
M in this study with a verdict, the answer quotes it (`analysis.claims.claim_verdict` over those
comparisons).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from analysis import claims
from analysis import claims_stats as cs
from analysis.load import COMPLETED, Frames
from analysis.registry import register
from analysis.style import new_figure, save_figure
from analysis.tables import number, write_table

QUADRATIC_FROM = 20  # fewer: a quadratic's refits on resampled trials swing wildly
N_BOOT = 200
SEED = 0
GRID = 101  # points of h on which a fit is drawn and its span measured


def relative_entropy(pi: list[float]) -> float:
    """h(π) = −Σ π_m ln π_m / ln M (module docstring); 1.0 for M = 1."""
    if len(pi) < 2:
        return 1.0
    p = np.asarray(pi, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(len(pi)))


def degree(n: int) -> int | None:
    """The polynomial degree fitted to ``n`` trials (None: no fit)."""
    return 2 if n >= QUADRATIC_FROM else 1 if n >= 3 else None


def fit(x: np.ndarray, y: np.ndarray, at: np.ndarray, deg: int, level: float = 0.95
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OLS polynomial of degree ``deg``: (fitted mean, band low, band high) at ``at``."""
    design = np.vander(x, deg + 1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(x) - (deg + 1)
    resid = y - design @ coef
    s2 = float(resid @ resid / dof) if dof > 0 else math.nan
    inv = np.linalg.pinv(design.T @ design)
    grid = np.vander(at, deg + 1)
    mean = grid @ coef
    se = np.sqrt(s2 * np.einsum("ij,jk,ik->i", grid, inv, grid))
    half = float(stats.t.ppf(0.5 + level / 2, max(dof, 1))) * se
    return mean, mean - half, mean + half


def span(x: np.ndarray, y: np.ndarray, deg: int, over: tuple[float, float] | None = None
         ) -> float:
    """Largest minus smallest fitted value over ``over`` (default: the observed range of x)."""
    low, high = over if over is not None else (x.min(), x.max())
    mean, _, _ = fit(x, y, np.linspace(low, high, GRID), deg)
    return float(mean.max() - mean.min())


def span_interval(x: np.ndarray, y: np.ndarray, deg: int, n_boot: int = N_BOOT,
                  seed: int = SEED) -> tuple[float, float]:
    """95% percentile interval of the span over trials resampled with replacement, each
    refit measured over the original trials' range of x (the same quantity as the span);
    a resample with fewer distinct x than the fit has coefficients is skipped."""
    rng = np.random.default_rng(seed)
    over = (float(x.min()), float(x.max()))
    spans = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.unique(x[i]).size > deg:
            spans.append(span(x[i], y[i], deg, over))
    if not spans:
        return math.nan, math.nan
    low, high = np.percentile(spans, [2.5, 97.5])
    return float(low), float(high)


def prep(frames: Frames) -> pl.DataFrame:
    """One row per completed pseudo-mixture trial with M ≥ 2 and a test IS LL, with h(π), the
    study's margin and the verdicts of the claims section's claim (c) comparisons of its M."""
    points = (
        frames.trials.filter((pl.col("state") == COMPLETED)
                             & (pl.col("prior") == "pseudo_mixture") & (pl.col("M") >= 2)
                             & pl.col("test_ll").is_finite())
        .select("study", "M", "trial_key", "arch", "K", "pi", "seed", "test_ll")
        .with_columns(pl.col("pi").map_elements(relative_entropy, return_dtype=pl.Float64)
                      .alias("entropy"))
        .join(frames.studies.select("study", "pi_margin"), on="study", how="left")
        .sort("study", "M", "entropy")
    )
    if points.is_empty():
        return points.with_columns(pl.lit(None, pl.List(pl.String)).alias("claim_c"))
    return points.join(_claim_c(frames), on=["study", "M"], how="left")


def _claim_c(frames: Frames) -> pl.DataFrame:
    """(study, M, claim_c): the verdicts of the claims section's claim (c) comparisons (scope
    "study · …", comparison "M=m π=… − uniform"), "no data" ones left out."""
    rows = claims.prep(frames).filter((pl.col("claim") == "c")
                                      & (pl.col("verdict") != cs.NO_DATA))
    return (
        rows.select(pl.col("scope").str.split(" · ").list.first().alias("study"),
                    pl.col("comparison").str.extract(r"^M=(\d+) ").cast(pl.Int64).alias("M"),
                    "verdict")
        .drop_nulls("M")
        .group_by("study", "M").agg(pl.col("verdict").alias("claim_c"))
    )


def summarise(df: pl.DataFrame) -> pl.DataFrame:
    """Per study and M: trials, range of h, fit degree, span with its interval, the margin and
    the answer (module docstring)."""
    rows = []
    for (study, m), part in df.group_by(["study", "M"], maintain_order=True):
        x, y = part["entropy"].to_numpy(), part["test_ll"].to_numpy()
        margin = float(part["pi_margin"][0])
        deg = degree(len(x))
        if deg is not None and np.unique(x).size <= deg:
            deg = None
        value = span(x, y, deg) if deg is not None else math.nan
        low, high = span_interval(x, y, deg) if deg is not None else (math.nan, math.nan)
        verdicts = part["claim_c"][0]
        rows.append({"study": study, "M": m, "trials": len(x), "h_min": float(x.min()),
                     "h_max": float(x.max()), "degree": deg, "span": value, "low": low,
                     "high": high, "margin": margin,
                     "answer": answer(value, low, high, margin, len(x),
                                      list(verdicts) if verdicts is not None else [])})
    return pl.DataFrame(rows, schema={"study": pl.String, "M": pl.Int64, "trials": pl.Int64,
                                      "h_min": pl.Float64, "h_max": pl.Float64,
                                      "degree": pl.Int64, "span": pl.Float64,
                                      "low": pl.Float64, "high": pl.Float64,
                                      "margin": pl.Float64, "answer": pl.String})


def answer(value: float, low: float, high: float, margin: float, n: int,
           verdicts: list[str]) -> str:
    """Claim (c)'s question asked of the fit: a verdict from the claims section's paired
    design where it has one, a description otherwise."""
    known = [v for v in verdicts if v not in (cs.NO_DATA, cs.FEW_SEEDS)]
    if known:
        verdict = claims.claim_verdict(verdicts)
        return (f"verdict ({claims.STATEMENTS['c']}): {verdict} — the claims section's "
                f"paired comparisons of this M over seeds ({len(verdicts)} comparison(s))")
    if math.isnan(value):
        return (f"no fit: {n} trial(s); a line needs 3 with distinct π, a quadratic "
                f"{QUADRATIC_FROM}")
    if low > margin:
        where = f"above the margin of {margin:g} nat over its whole interval"
    elif high < margin:
        where = f"below the margin of {margin:g} nat over its whole interval"
    else:
        where = f"its interval straddles the margin of {margin:g} nat"
    return (f"description, not a verdict: the fitted IS LL changes by {value:.2f} nats "
            f"[{low:.2f}, {high:.2f}] across the observed π ({where}); the trials also "
            "differ in other settings and each is one training run, so no verdict")


def draw(df: pl.DataFrame):  # -> matplotlib.figure.Figure
    groups = df.select("study", "M").unique(maintain_order=True).rows()
    fig, axes = new_figure(len(groups), ncols=2, panel_size=(5.0, 3.6))
    archs = sorted(df["arch"].drop_nulls().unique().to_list())
    for ax, (study, m) in zip(axes, groups, strict=True):
        part = df.filter((pl.col("study") == study) & (pl.col("M") == m))
        x, y = part["entropy"].to_numpy(), part["test_ll"].to_numpy()
        for i, arch in enumerate(archs):
            mine = part.filter(pl.col("arch") == arch)
            if mine.height:
                ax.scatter(mine["entropy"], mine["test_ll"], color=f"C{i}", label=arch,
                           zorder=3)
        deg = degree(len(x))
        if deg is not None and np.unique(x).size > deg:
            at = np.linspace(x.min(), x.max(), GRID)
            mean, low, high = fit(x, y, at, deg)
            ax.plot(at, mean, color="0.2", label=f"OLS fit (degree {deg})")
            ax.fill_between(at, low, high, color="0.2", alpha=0.15, label="95% band")
        ax.set_xlabel("entropy of π relative to uniform, h(π)")
        ax.set_ylabel("test IS LL (nats)")
        ax.set_title(f"M = {m}" + (f" — {study}" if df["study"].n_unique() > 1 else ""))
        ax.legend(fontsize="small")
    return fig


def notes(df: pl.DataFrame) -> list[str]:
    return [f"{r['study']} · M = {r['M']}: {r['answer']}." for r in
            summarise(df).iter_rows(named=True)]


@register(
    "pi_ablation",
    title="Does π matter — IS LL across the simplex (π as a continuous ablation)",
    caption=(
        "Each completed pseudo-mixture trial with M ≥ 2: test IS LL against the entropy of its "
        "mixture weights relative to uniform (1 = uniform), one panel per M, coloured by "
        "architecture, with an OLS fit (a line, or a quadratic from 20 trials) and its 95% "
        "band; the table gives the fit's span across the observed π with a resampling "
        "interval, against the study's margin for claim (c)."
    ),
    prep=prep,
    absent="no completed pseudo-mixture trial with M ≥ 2 has a test IS LL",
    notes=notes,
)
def render(df: pl.DataFrame, out_dir: Path) -> list[Path]:
    summary = summarise(df)

    def fmt(col: str) -> pl.Expr:  # no fit: blank, not "NaN"
        return pl.when(pl.col(col).is_nan()).then(pl.lit("")).otherwise(number(col, 3))

    shown = summary.select(
        "study", "M", "trials", pl.format("[{}, {}]", fmt("h_min"), fmt("h_max")).alias("h(π)"),
        pl.col("degree").cast(pl.String).fill_null(""), fmt("span").alias("span (nats)"),
        pl.when(pl.col("span").is_nan()).then(pl.lit(""))
        .otherwise(pl.format("[{}, {}]", fmt("low"), fmt("high"))).alias("95% interval"),
        "margin", "answer")
    if summary["study"].n_unique() <= 1:
        shown = shown.drop("study")
    return (save_figure(draw(df), out_dir, "pi_ablation")
            + write_table(summary, shown, out_dir, "pi_ablation"))
