"""The statistics behind the claims section, vectorised over studies (NumPy only).

**The unit of inference is a training run.** A comparison "A − B" gives one difference per
seed: d_s = the mean, over the matched pairs of seed s, of IS LL(A) − IS LL(B) (the pairs of a
seed differ in the nuisance settings, e.g. K; `analysis.claims_design` builds them). Why the
within-seed average and not a mixed model with the seed as a random effect: the grids are
balanced (every seed has the same cells), where the two give the same point estimate and the
average's t-test over seeds *is* the mixed model's exact test of the fixed effect (the
seed-by-comparison interaction is the error term); with 3 seeds a mixed model's variance
components cannot be estimated, and its Satterthwaite or Kenward–Roger degrees of freedom would
only reproduce n − 1. The average needs no iterative fit and stays exact when a seed is
incomplete (such a seed is dropped from the comparison and named, not imputed).

All functions take arrays whose last axis is the seed (NaN: no difference for that seed) and
any leading axes (studies of a simulation, comparisons of a claim), so the report (one study)
and the calibration tests (thousands of simulated studies, `analysis.simulate`) call the same
code.

Per comparison with n ≥ `MIN_SEEDS` seeds: mean d̄, s.e. s_d/√n, Student's t with n − 1 df.

- one-sided claims ("A > B"): p_sup = P(T ≥ t) for the expected direction, p_con for the other.
  A comparison is *supported* when p_sup < α/2 (its 95% interval lies on the expected side);
  *contradicted* when Holm's step-down adjustment of the family's p_con values is < α/2.
- equivalence ("π matters little", margin δ): two one-sided tests (TOST), p_eq = max(P(T ≥
  (d̄ + δ)/se), P(T ≤ (d̄ − δ)/se)); *supported* when p_eq < α (the 90% interval lies inside
  ±δ); *contradicted* ("π matters") when the Holm-adjusted p_out = min(1, 2 min(P(T ≥ (d̄ −
  δ)/se), P(T ≤ (d̄ + δ)/se))) < α (the 95% interval lies outside ±δ).
- with n < 3: the comparison is shown (mean and range over its seeds, labelled descriptive) and
  its verdict is ``FEW_SEEDS``; it is not part of the Holm family.

A claim's comparisons (in one scope) are one family. The claim is *contradicted* when any
comparison is (Holm: the chance of any false "contradicted" in the family ≤ α/2); *supported*
when every comparison is — an intersection–union test, whose level is the per-comparison level
without any correction (Berger 1982; Holm there would only cost power) — and *inconclusive*
otherwise. The calibration tests (tests/analysis/test_calibration.py) measure both rates on
simulated null studies.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_SEEDS = 3
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NO_DATA = "supported", "contradicted", "inconclusive", \
    "no data"
FEW_SEEDS = f"inconclusive (n seeds < {MIN_SEEDS})"
# verdict codes of the vectorised functions
CODE_NO_DATA, CODE_FEW, CODE_INCONCLUSIVE, CODE_SUPPORTED, CODE_CONTRADICTED = -2, -1, 0, 1, 2
VERDICTS = {CODE_NO_DATA: NO_DATA, CODE_FEW: FEW_SEEDS, CODE_INCONCLUSIVE: INCONCLUSIVE,
            CODE_SUPPORTED: SUPPORTED, CODE_CONTRADICTED: CONTRADICTED}
Z95 = 1.959963984540054
# the minimum-effect test beside a directional comparison's sign verdict
MIN_NONE, MIN_INCONCLUSIVE, MIN_CONSISTENT, MIN_EXCLUDED = 0, 1, 2, 3
LOW_RATE = 0.10  # claim (f): "does not collapse" needs the rate's upper end below this


def partial_claim(claim_code: np.ndarray, present: int, required: int) -> np.ndarray:
    """A claim that needs ``required`` comparisons (claim a: its three steps) and has only
    ``present`` in the study cannot be supported: inconclusive instead."""
    if present >= required:
        return claim_code
    return np.where(claim_code == CODE_SUPPORTED, CODE_INCONCLUSIVE, claim_code)


def seed_summary(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n (seeds with a difference), mean and standard error over the last axis (NaN-aware;
    se NaN for n < 2)."""
    d = np.asarray(d, dtype=float)
    ok = np.isfinite(d)
    n = ok.sum(-1)
    filled = np.where(ok, d, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(-1) / n
        dev = np.where(ok, d - mean[..., None], 0.0)
        var = (dev**2).sum(-1) / (n - 1)
        se = np.sqrt(var / n)
    mean = np.where(n > 0, mean, np.nan)
    se = np.where(n > 1, se, np.nan)
    return n, mean, se


def _sf(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """P(T ≥ t) for Student's t with ``df``; a zero standard error gives t = ±inf (or nan for
    0/0, read as no evidence: 1)."""
    with np.errstate(invalid="ignore"):
        p = stats.t.sf(t, np.maximum(df, 1))
    return np.where(np.isnan(t), 1.0, p)


def _t(mean: np.ndarray, se: np.ndarray, shift: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (mean - shift) / se


def t_interval(mean: np.ndarray, se: np.ndarray, df: np.ndarray,
               level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Student's t interval of the mean with ``df`` degrees of freedom (n − 1 over seeds, or
    `noise_summary`'s Satterthwaite df; NaN where se is)."""
    with np.errstate(invalid="ignore"):
        half = stats.t.ppf(0.5 + level / 2, np.maximum(df, 1)) * se
    return mean - half, mean + half


def noise_summary(d: np.ndarray, image: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n, mean, se and df of the mean over seeds: the t over seeds (df n − 1), or with
    ``image`` = (var_image, df) from `analysis.claims_noise.components` the test-image part of
    the variance added and its Satterthwaite df."""
    n, mean, se = seed_summary(d)
    if image is None:
        return n, mean, se, (n - 1).astype(float)
    var_image, df = image
    return n, mean, np.sqrt(se**2 + np.nan_to_num(var_image)), np.where(np.isfinite(df), df,
                                                                        n - 1.0)


def holm(p: np.ndarray, tested: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values over the last axis, among the entries ``tested``
    (the others come back as 1 and do not count in the family size)."""
    p = np.where(tested, np.asarray(p, dtype=float), np.inf)
    order = np.argsort(p, axis=-1, kind="stable")
    sorted_p = np.take_along_axis(p, order, -1)
    k = tested.sum(-1, keepdims=True)
    factor = k - np.arange(p.shape[-1])
    with np.errstate(invalid="ignore"):
        adjusted = np.minimum(1.0, np.maximum.accumulate(np.where(
            np.isfinite(sorted_p), factor * sorted_p, 1.0), axis=-1))
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, -1)
    return np.where(tested, out, 1.0)


def _family(sup: np.ndarray, con: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Comparison and claim codes from per-comparison booleans (last axis: comparisons)."""
    code = np.where(con, CODE_CONTRADICTED, np.where(sup, CODE_SUPPORTED, CODE_INCONCLUSIVE))
    code = np.where(n == 0, CODE_NO_DATA, np.where(n < MIN_SEEDS, CODE_FEW, code))
    present = code != CODE_NO_DATA
    claim = np.select(
        [~present.any(-1), (code == CODE_CONTRADICTED).any(-1),
         (code == CODE_SUPPORTED).all(-1), ((code == CODE_FEW) | ~present).all(-1)],
        [CODE_NO_DATA, CODE_CONTRADICTED, CODE_SUPPORTED, CODE_FEW], CODE_INCONCLUSIVE)
    return code, claim


def one_sided_family(d: np.ndarray, expected: np.ndarray | int,
                     image: tuple[np.ndarray, np.ndarray] | None = None,
                     reference: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Verdicts of one-sided comparisons (d: (..., k, seeds); ``expected`` ±1 per comparison;
    ``image`` as in `noise_summary`): n, mean, se, df, p_sup, p_con_holm, the comparison codes
    (..., k) and the claim code (...). With ``reference`` (> 0 nats in the expected direction,
    per comparison) also the minimum-effect test's p_excluded_holm and codes ``min_code``
    (`MIN_EFFECT`)."""
    n, mean, se, df = noise_summary(d, image)
    sign = np.broadcast_to(np.asarray(expected, dtype=float), mean.shape)
    tested = n >= MIN_SEEDS
    p_sup = _sf(sign * _t(mean, se, 0.0), df)
    p_con = _sf(-sign * _t(mean, se, 0.0), df)
    p_con_holm = holm(p_con, tested)
    code, claim = _family(tested & (p_sup < ALPHA / 2), tested & (p_con_holm < ALPHA / 2), n)
    out = {"n": n, "mean": mean, "se": se, "df": df, "p_sup": np.where(tested, p_sup, np.nan),
           "p_con_holm": np.where(tested, p_con_holm, np.nan), "code": code, "claim": claim}
    if reference is not None:
        ref = np.broadcast_to(np.asarray(reference, dtype=float), mean.shape)
        has = tested & np.isfinite(ref)
        # H0: the true gain ≥ reference; excluded when the gain's upper end lies below it
        p_excl = holm(_sf(_t(np.nan_to_num(ref), se, sign * mean), df), has)
        excluded = has & (p_excl < ALPHA / 2)
        out["p_excluded_holm"] = np.where(has, p_excl, np.nan)
        out["min_code"] = np.where(~has, MIN_NONE, np.where(excluded, MIN_EXCLUDED, np.where(
            p_sup < ALPHA / 2, MIN_CONSISTENT, MIN_INCONCLUSIVE)))
    return out


def equivalence_family(d: np.ndarray, margin: float,
                       image: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> dict[str, np.ndarray]:
    """Verdicts of equivalence comparisons |Δ| < ``margin`` (d: (..., k, seeds); ``image`` as
    in `noise_summary`): n, mean, se, df, p_eq (TOST), p_out_holm, the comparison codes, the
    claim code and ``smallest_margin``: the smallest margin the TOST would support (the
    larger end of the 90% interval's absolute values)."""
    n, mean, se, df = noise_summary(d, image)
    tested = n >= MIN_SEEDS
    p_eq = np.maximum(_sf(_t(mean, se, -margin), df), _sf(-_t(mean, se, margin), df))
    p_out = np.minimum(1.0, 2 * np.minimum(_sf(_t(mean, se, margin), df),
                                           _sf(-_t(mean, se, -margin), df)))
    p_out_holm = holm(p_out, tested)
    code, claim = _family(tested & (p_eq < ALPHA), tested & (p_out_holm < ALPHA), n)
    low, high = t_interval(mean, se, df, 1 - 2 * ALPHA)
    return {"n": n, "mean": mean, "se": se, "df": df, "p_eq": np.where(tested, p_eq, np.nan),
            "p_out_holm": np.where(tested, p_out_holm, np.nan), "code": code, "claim": claim,
            "smallest_margin": np.where(tested, np.maximum(np.abs(low), np.abs(high)), np.nan)}


def fisher_z(rho: np.ndarray) -> np.ndarray:
    """atanh(ρ) with ρ clamped to ±0.999 (a per-seed ρ of exactly ±1 stays finite)."""
    return np.arctanh(np.clip(rho, -0.999, 0.999))


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ over the last axis (models) for every leading index (e.g. study × seed);
    NaN where any value is missing or fewer than 3 models."""
    ok = np.isfinite(x).all(-1) & np.isfinite(y).all(-1) & (x.shape[-1] >= 3)
    rx = stats.rankdata(np.nan_to_num(x), axis=-1)
    ry = stats.rankdata(np.nan_to_num(y), axis=-1)
    rx, ry = rx - rx.mean(-1, keepdims=True), ry - ry.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(-1) / np.sqrt((rx**2).sum(-1) * (ry**2).sum(-1))
    return np.where(ok, rho, np.nan)


def rank_agreement(rho_seeds: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Claim (d) from per-seed Spearman ρ (..., seeds): the t interval over seeds of their
    Fisher z, back-transformed; supported when it lies above ``threshold``, contradicted when
    below (two-sided 95%). Codes as in `one_sided_family` (one comparison)."""
    z = fisher_z(rho_seeds)
    n, mean, se = seed_summary(z)
    low, high = t_interval(mean, se, n - 1)
    tested = n >= MIN_SEEDS
    z0 = math.atanh(threshold)
    sup, con = tested & (low > z0), tested & (high < z0)
    code, claim = _family(sup[..., None], con[..., None], n[..., None])
    return {"n": n, "rho": np.tanh(mean), "low": np.tanh(low), "high": np.tanh(high),
            "code": code[..., 0], "claim": claim}


def wilson(successes: np.ndarray | int, n: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Wilson 95% interval of a proportion (NaN for n = 0)."""
    s, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / n
        centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
        half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return centre - half, centre + half


def clustered_rate(k: np.ndarray, n: np.ndarray) -> tuple[float, float, float, float]:
    """A rate over trials that cluster by seed (``k`` successes of ``n`` trials per seed):
    the rate p̂ = Σk / Σn, the design effect used and a 95% interval that holds however
    strongly the trials of a seed resemble each other.

    The interval is Wilson's at the effective sample size C (the number of seeds), i.e. for
    p̂·C successes of C: each seed's rate lies in [0, 1], so its variance is at most p(1 − p)
    (Bhatia–Davis), that of one Bernoulli trial — treating the seeds as the sample is the worst
    case of the clustering (design effect Σn / C, the mean cluster size). An estimated design
    effect (Rao & Scott) was tried and rejected: with 3 seeds its between-seed variance has 2
    df, and on simulated clustered studies (true rate 10%, intra-seed correlation 0.2–0.5) the
    interval's upper end fell below 10% in up to 40% of them (tests/analysis/
    test_calibration.py measures this interval instead). The cost: "below 10%" needs at least
    35 seeds without a collapse."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    total = n.sum()
    if total == 0:
        return math.nan, math.nan, math.nan, math.nan
    p = k.sum() / total
    c = len(n)
    low, high = wilson(p * c, c)
    return float(p), total / c, float(low), float(high)


def fraction_verdict(low: np.ndarray | float, high: np.ndarray | float,
                     below: float = LOW_RATE) -> np.ndarray:
    """Claim (f) from the rate's interval: supported ("does not collapse") when its upper end
    lies below ``below``, contradicted when its lower end lies above (codes; NO_DATA for a
    NaN interval)."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    code = np.where(high < below, CODE_SUPPORTED, np.where(low > below, CODE_CONTRADICTED,
                                                           CODE_INCONCLUSIVE))
    return np.where(np.isnan(high), CODE_NO_DATA, code)
