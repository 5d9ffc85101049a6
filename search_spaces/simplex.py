"""Mixture weights π on the simplex: continuous parameterisations and the paper's lists.

Everything here is plain arithmetic on floats (no Optuna, no torch), so the define-by-run spaces
and the grids share one way of writing π, and ``ModelConfig``'s check (every π_m > 0, Σ π_m = 1
within 1e-6) holds by construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

# The smallest weight a searched π may give a component: a component with π_m → 0 is dead
# weight in the encoder and makes log π_m in the matched bound (eq. 12) blow up.
PI_FLOOR = 0.02

# Figure 4 of the paper: the mixture coefficients compared for M = 2 and M = 3, in the paper's
# order. Written as exact fractions so that 1/3 is exact until the one float conversion.
FIGURE4_PIS: dict[int, tuple[str, ...]] = {
    2: ("0.1,0.9", "0.2,0.8", "0.3,0.7", "0.4,0.6", "0.5,0.5"),
    3: ("0.1,0.1,0.8", "0.1,0.2,0.7", "0.2,0.2,0.6", "0.3,0.2,0.5", "0.3,0.3,0.4",
        "1/3,1/3,1/3"),
}


def stick_breaking(fractions: Sequence[float]) -> list[float]:
    """Map M − 1 numbers u_m in [0, 1] to a point of the M-simplex.

    Component m takes the share v_m of what is left, with v_m = 1 − (1 − u_m)^(1/(M−1−m)), the
    inverse CDF of Beta(1, M − 1 − m): uniform u_m give the uniform (Dirichlet(1, …, 1))
    distribution on the simplex, so a random sampler explores all of it evenly, and nearby u are
    nearby π, which is what TPE and CMA-ES need.
    """
    m_total = len(fractions) + 1
    pi: list[float] = []
    rest = 1.0
    for m, u in enumerate(fractions):
        u = min(max(float(u), 0.0), 1.0)
        share = 1.0 - (1.0 - u) ** (1.0 / (m_total - 1 - m))
        pi.append(rest * share)
        rest -= pi[-1]
    pi.append(max(rest, 0.0))
    return pi


def floor_simplex(pi: Sequence[float], floor: float = PI_FLOOR) -> list[float]:
    """Lift every weight to at least ``floor`` and keep the sum 1: π'_m = f + (1 − M·f)·π_m.

    An affine map of the simplex onto its inner part (not a clip-then-renormalise, which can
    push a clipped weight back under the floor); the last weight is 1 minus the others so the
    sum is 1 to rounding.
    """
    m_total = len(pi)
    if m_total * floor >= 1.0:
        raise ValueError(f"floor={floor!r} is invalid: expected a number < 1/M = {1 / m_total:g}")
    total = math.fsum(pi)
    scale = 1.0 - m_total * floor
    lifted = [floor + scale * (p / total) for p in pi[:-1]]
    return [*lifted, 1.0 - math.fsum(lifted)]


def decode_pi(text: str) -> list[float]:
    """``"0.1,0.9"`` or ``"1/3,1/3,1/3"`` → a list of floats (exact fractions, one rounding)."""
    return [float(Fraction(part.strip())) for part in text.split(",")]


def encode_pi(pi: Sequence[float | str]) -> str:
    """A list of weights → the string form that an Optuna categorical choice can hold."""
    return ",".join(str(p) for p in pi)


def figure4_pis(m: int) -> list[list[float]]:
    """The paper's Figure 4 weight vectors for M = ``m`` (2 or 3), as floats."""
    if m not in FIGURE4_PIS:
        raise ValueError(f"M={m!r} is invalid: expected one of {', '.join(map(str, FIGURE4_PIS))}")
    return [decode_pi(text) for text in FIGURE4_PIS[m]]
