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

Thresholds, from measured distributions after the warm-up (the per-epoch validation
diagnostics of figure4_fashion, 66 trials, and the synthetic cases; the measured quantiles are
in the README and in `benchmarks/collapse_distributions.py`'s output): trained with the
paper's bound (greedy) the spread ratio is ≤ 0.002 and the perplexity ≥ 0.99 at every epoch
after the warm-up; trained with `lse` or `mc` the spread ratio is ≥ 0.3 and the perplexity
≤ 0.2. The two populations are separated by orders of magnitude in the spread and by more
than half the range in the perplexity; COLLAPSE_SPREAD = 0.05 and COLLAPSE_PERPLEXITY = 0.5
sit in both gaps, away from either population.
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
