"""The statistics behind the claims section: paired differences, their 95% intervals, verdicts.

A comparison "A − B" pairs trials that differ only in what is compared (same dataset, arch, K,
π, KL estimator and seed unless the claim varies one of them); the *pairs* are its rows.

Interval method (stated in the report):

- **≥ 3 pairs — over training seeds (t):** d_j = LL(A_j) − LL(B_j) per pair, the interval is
  d̄ ± t_{0.975, n−1} · s_d / √n (Student's t, paired). It covers the variation between
  training runs (seeds), the thing a claim about a method is about.
- **1 or 2 pairs — over test images (z), conditional on these trained models:** with two seeds a
  t-interval has t_{0.975,1} = 12.7 and says nothing. Instead each test image i gets
  D_i = mean over the pairs of [ll_A(i) − ll_B(i)] (the same image under both models), and the
  interval is D̄ ± 1.96 · s_D / √N over the N test images. It covers the test-set sampling
  (and the importance-sampling noise) of *these* trained models, not a new training run; so a
  verdict from it also requires every pair's own difference d_j on the same side.

Verdict of a one-sided claim "A > B": supported when the interval lies above 0 (and, with the
image method, every d_j > 0); contradicted when it lies below 0 (every d_j < 0); otherwise
inconclusive. Equivalence claims ("π matters little") use a margin δ: supported when the
interval lies inside [−δ, δ], contradicted when it lies entirely outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import stats

MIN_SEED_PAIRS = 3  # below this the interval is taken over test images
Z95 = 1.959963984540054
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NO_DATA = "supported", "contradicted", "inconclusive", \
    "no data"


@dataclass(frozen=True)
class Interval:
    """A paired difference: its mean, 95% interval, method, the per-pair differences and the
    trial keys it was computed from."""

    n_pairs: int
    mean: float
    low: float
    high: float
    method: str
    pair_diffs: tuple[float, ...]
    rows: tuple[str, ...] = field(default=())

    def side(self) -> int:
        """+1 when the interval lies above 0, −1 below, 0 otherwise (see the module doc)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return 0
        agree = self.method.startswith("t ")
        if self.low > 0 and (agree or all(d > 0 for d in self.pair_diffs)):
            return 1
        if self.high < 0 and (agree or all(d < 0 for d in self.pair_diffs)):
            return -1
        return 0


def seed_interval(diffs: np.ndarray) -> tuple[float, float]:
    """Student's t 95% interval of the mean of ``diffs`` (n ≥ 2)."""
    n = diffs.size
    half = stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / math.sqrt(n)
    return float(diffs.mean() - half), float(diffs.mean() + half)


def image_interval(per_image: np.ndarray) -> tuple[float, float]:
    """Normal 95% interval of the mean of the per-image differences (N ≥ 2)."""
    half = Z95 * per_image.std(ddof=1) / math.sqrt(per_image.size)
    return float(per_image.mean() - half), float(per_image.mean() + half)


def paired(pairs: pl.DataFrame, test_ll: pl.DataFrame | None) -> Interval | None:
    """The interval of ``pairs`` (columns key_a, key_b, ll_a, ll_b: one row per pair); for the
    image method ``test_ll`` (trial_key, image, log_likelihood). None without pairs."""
    if pairs.is_empty():
        return None
    diffs = (pairs["ll_a"] - pairs["ll_b"]).to_numpy()
    rows = tuple(sorted(set(pairs["key_a"].to_list()) | set(pairs["key_b"].to_list())))
    if diffs.size >= MIN_SEED_PAIRS:
        low, high = seed_interval(diffs)
        method = f"t over {diffs.size} seed pairs"
    else:
        per_image = _per_image(pairs, test_ll)
        if per_image is None or per_image.size < 2:
            return Interval(diffs.size, float(diffs.mean()), math.nan, math.nan,
                            "no interval (too few pairs, no per-image rows)", tuple(diffs), rows)
        low, high = image_interval(per_image)
        method = (f"z over {per_image.size} test images × {diffs.size} seed pair(s), "
                  "conditional on these models")
    return Interval(diffs.size, float(diffs.mean()), low, high, method,
                    tuple(float(d) for d in diffs), rows)


def _per_image(pairs: pl.DataFrame, test_ll: pl.DataFrame | None) -> np.ndarray | None:
    """D_i = mean over pairs of ll_A(i) − ll_B(i), on the images both models were scored on."""
    if test_ll is None or test_ll.is_empty():
        return None
    ll = test_ll.select("trial_key", "image", "log_likelihood")
    joined = (
        pairs.select("key_a", "key_b").with_row_index("pair")
        .join(ll.rename({"trial_key": "key_a", "log_likelihood": "a"}), on="key_a")
        .join(ll.rename({"trial_key": "key_b", "log_likelihood": "b"}), on=["key_b", "image"])
        .group_by("image").agg((pl.col("a") - pl.col("b")).mean().alias("d"),
                               pl.len().alias("n"))
        .filter(pl.col("n") == pairs.height)  # images every pair has
    )
    return joined["d"].drop_nulls().to_numpy() if joined.height else None


def one_sided(interval: Interval | None, expected: int) -> str:
    """The verdict of "the difference has the sign ``expected``" (+1 or −1)."""
    if interval is None:
        return NO_DATA
    side = interval.side()
    return SUPPORTED if side == expected else CONTRADICTED if side == -expected \
        else INCONCLUSIVE


def equivalence(interval: Interval | None, margin: float) -> str:
    """The verdict of "|difference| < margin" (see the module doc)."""
    if interval is None:
        return NO_DATA
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return INCONCLUSIVE
    if -margin < interval.low and interval.high < margin:
        return SUPPORTED
    if interval.low > margin or interval.high < -margin:
        return CONTRADICTED
    return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """A claim made of several comparisons: contradicted if any is, supported if all are."""
    known = [v for v in verdicts if v != NO_DATA]
    if not known:
        return NO_DATA
    if CONTRADICTED in known:
        return CONTRADICTED
    if all(v == SUPPORTED for v in known) and len(known) == len(verdicts):
        return SUPPORTED
    return INCONCLUSIVE


def wilson(successes: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of a proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return centre - half, centre + half


def spearman_interval(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Spearman's ρ with a Fisher-z 95% interval (SE 1.03/√(n − 3), Fieller et al. 1957);
    nan bounds for n ≤ 3."""
    rho = float(stats.spearmanr(x, y).statistic)
    n = x.size
    if n <= 3 or not math.isfinite(rho):
        return rho, math.nan, math.nan
    z = math.atanh(max(min(rho, 0.999999), -0.999999))
    half = Z95 * 1.03 / math.sqrt(n - 3)
    return rho, math.tanh(z - half), math.tanh(z + half)
