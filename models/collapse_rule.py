"""The collapse rule: when a pseudo-input prior counts as *collapsed* (torch-free, so the
analysis can apply it to the recorded columns of trials.parquet without importing torch).

A prior p(z) = (1/K) Σ_k q(z|a_k) has collapsed when its K members became one distribution:
then (i) their means sit together — ``spread_ratio`` (models.diagnostics) is small — and
(ii) every image's sample z is shared by all members alike — ``resp_perplexity`` (the
responsibility perplexity relative to K) is near 1. Either alone misleads:

- a small spread alone also flags a prior of *distinct but narrow* members (synthetic,
  tests/models/test_diagnostics.py: D = 40, spread ratio 0.04, member σ 0.1 — the members are
  far apart relative to their own width, ``resp_perplexity`` 0.11: not collapsed);
- and every prior *starts* with a spread ratio near 0.02, because the pseudo-inputs start as
  near-identical noise images (VampPrior's N(0.05, 0.01²)); `mc` / `lse` priors spread out
  during the first epochs. So nothing is decided while the KL weight is still warming up.

Rule (`collapse_state`): undecided (None) without diagnostics (the VAE, schema-version-1 rows)
or when the diagnostics are of an epoch before the warm-up ends (epoch < warmup_epochs, epochs
counted from 1; β reaches 1 at epoch = warmup_epochs); otherwise "healthy" unless
``spread_ratio < COLLAPSE_SPREAD`` **and** ``resp_perplexity > COLLAPSE_PERPLEXITY``; such a
prior is "collapsed" when its spread *fell* during training — below `FELL` × the largest spread
recorded at an earlier epoch — and "not yet spread" when it did not (its members still sit
where the near-identical initial pseudo-inputs put them: neither healthy nor collapsed). Without
the per-epoch record (``earlier_peak`` None) a small spread counts as collapsed, as before.
`is_collapsed` is True / False for collapsed / healthy and None otherwise.

Why a fall, and why by half: every prior starts near a spread of 0.02 (above), so a small
spread alone cannot tell a prior the objective pulled together from one that has not yet
moved. Measured per epoch (validation set; epoch 1 is after one epoch of training):

- the paper's bound (greedy), reproduce_fashion (run from a fresh clone, 2026-12-07: mlp,
  4,000 training images, 10 epochs, warm-up 3, lr 1e-3), M = 1 and 2, K = 10 … 500, 12
  trials: spread 0.0068 … 0.0094 at epoch 1, falling every epoch to 0.0010 … 0.0014 at epoch
  10 — 0.11 … 0.19 of its epoch-1 value, every trial below half of it by epoch 3;
- an open search on digits with `lse`, 8 epochs (issue 22): 0.024 at epoch 1 *rising* to 0.026
  — 9 of 12 trials were flagged collapsed by the spread alone;
- short runs with `python -m study.cli train` (2026-12-07; mlp, M = 2, warm-up 3, lr as
  noted; docs/VERDICTS.md lists the commands): on digits (K = 50, 8 epochs, lr 5e-4) *every*
  estimator's prior stays at 0.019 … 0.029 throughout, greedy included (greedy 0.0225 →
  peak 0.0257 → 0.0186 at epoch 8, 0.72 … 0.76 of its peak; lse 0.78 … 0.80; mc rising to
  0.029) — at that budget no prior has moved yet, whatever the objective; on Fashion-MNIST
  (K = 100, 2,000 images, 6 epochs, lr 1e-3) `lse` and `mc` start where greedy starts (0.0087,
  0.0093 at epoch 1) and rise every epoch (0.04, 0.17, 0.45 … 0.52, 0.71 … 0.85, 0.77 … 0.88;
  perplexity/K 0.996 → 0.03).

The ratio of the judged epoch's spread to the largest earlier one is 0.11 … 0.19 for the
collapsing priors, ≥ 0.72 for the priors that have not moved and ≥ 1 for the spreading ones;
`FELL` = ½ sits in that gap with room on both sides (the noise of one epoch's spread ratio on
500 validation images is a few per cent).

Thresholds, from measured distributions (`benchmarks/collapse_distributions.py` on the
per-epoch validation diagnostics of figure4_fashion — mlp, M = 2 / 3, K = 500, 6,000 training
and 500 validation images, 12 epochs, warm-up 4 — run from main on 2026-12-01; min … max over
all epochs ≥ the warm-up of the trials finished by 23:17, 46 of 66):

| trained with | trials | epochs | spread_ratio | resp_perplexity |
| --- | --- | --- | --- | --- |
| greedy (paper) | 33 | 297 | 0.0007 … 0.0020 | 0.9999 … 1.0000 |
| lse | 13 | 117 | 0.856 … 0.934 | 0.0045 … 0.0077 |
| lse, epochs 1–3 (warm-up) | 13 | 39 | 0.116 … 0.903 | 0.008 … 0.435 |

and the synthetic narrow-but-distinct prior (D = 40, K = 10, member σ 0.1): spread 0.038,
perplexity 0.115. `mc` (docs/RESULTS.md's reproduce_fashion table, epoch 12): spread 0.77 …
0.91. The two trained populations are apart by more than two orders of magnitude in the spread
and by almost the whole range in the perplexity; COLLAPSE_SPREAD = 0.05 and COLLAPSE_PERPLEXITY
= 0.5 sit in both gaps (every greedy epoch after the warm-up is flagged, no lse epoch is, and
no epoch of either had a spread below 0.05 with a perplexity below 0.5). During the warm-up an
lse prior still reads perplexity up to 0.43: hence no decision before it ends.
"""

from __future__ import annotations

import math

COLLAPSE_SPREAD = 0.05
COLLAPSE_PERPLEXITY = 0.5
FELL = 0.5  # collapsed only when the spread fell below this fraction of an earlier epoch's
COLLAPSED, HEALTHY, NOT_YET_SPREAD = "collapsed", "healthy", "not yet spread"
RULE_TEXT = (f"spread ratio < {COLLAPSE_SPREAD:g} and responsibility perplexity / K > "
             f"{COLLAPSE_PERPLEXITY:g}, judged after the warm-up; where the per-epoch record "
             f"is read (the report), the spread must also have fallen below "
             f"{FELL:g} × its largest earlier value, else 'not yet spread'")


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def collapse_state(spread_ratio: float | None, resp_perplexity: float | None,
                   epoch: int | None, warmup_epochs: int | None,
                   earlier_peak: float | None = None) -> str | None:
    """The rule of the module docstring for diagnostics measured at ``epoch`` (from 1) of a run
    with ``warmup_epochs``; ``earlier_peak``: the largest spread ratio of the epochs before
    ``epoch`` (None: no record). `COLLAPSED`, `HEALTHY`, `NOT_YET_SPREAD` or None
    (undecided)."""
    if not (_finite(spread_ratio) and _finite(resp_perplexity)) or epoch is None:
        return None
    if epoch < max(int(warmup_epochs or 0), 1):
        return None
    if not (spread_ratio < COLLAPSE_SPREAD and resp_perplexity > COLLAPSE_PERPLEXITY):
        return HEALTHY
    if _finite(earlier_peak) and not spread_ratio < FELL * earlier_peak:
        return NOT_YET_SPREAD
    return COLLAPSED


def is_collapsed(spread_ratio: float | None, resp_perplexity: float | None,
                 epoch: int | None, warmup_epochs: int | None,
                 earlier_peak: float | None = None) -> bool | None:
    """`collapse_state` as True (collapsed), False (healthy) or None (undecided, or not yet
    spread)."""
    state = collapse_state(spread_ratio, resp_perplexity, epoch, warmup_epochs, earlier_peak)
    return {COLLAPSED: True, HEALTHY: False}.get(state)
