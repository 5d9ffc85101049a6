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

Rule (`is_collapsed`): undecided (None) without diagnostics (the VAE, schema-version-1 rows)
or when the diagnostics are of an epoch before the warm-up ends (epoch < warmup_epochs, epochs
counted from 1; β reaches 1 at epoch = warmup_epochs); otherwise collapsed ⇔
``spread_ratio < COLLAPSE_SPREAD`` **and** ``resp_perplexity > COLLAPSE_PERPLEXITY``.

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
RULE_TEXT = (f"spread ratio < {COLLAPSE_SPREAD:g} and responsibility perplexity / K > "
             f"{COLLAPSE_PERPLEXITY:g}, judged after the warm-up")


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def is_collapsed(spread_ratio: float | None, resp_perplexity: float | None,
                 epoch: int | None, warmup_epochs: int | None) -> bool | None:
    """The collapse rule of the module docstring for diagnostics measured at ``epoch``
    (from 1) of a run with ``warmup_epochs``; None when undecided."""
    if not (_finite(spread_ratio) and _finite(resp_perplexity)) or epoch is None:
        return None
    if epoch < max(int(warmup_epochs or 0), 1):
        return None
    return bool(spread_ratio < COLLAPSE_SPREAD and resp_perplexity > COLLAPSE_PERPLEXITY)
