"""Calibration of the claims' machinery on simulated studies (analysis.simulate) **at the noise
our studies measured** (the simulator's defaults, named in its docstring: per-trial seed ×
setting sd `INTER_SD`, test-image effect sd `IMAGE_SD`, per-image sd `RUN_IMAGE_SD`, 500 test
images), and at the upper end of that range with heteroscedastic settings. On 2,000 studies
per case the false-verdict rate is ≤ its nominal level + 3 Monte Carlo standard errors; the
power a case states is the power `analysis.claims_noise` computes for that noise, and the
simulated rate agrees with it; fewer than 3 seeds never give a verdict. The verdicts come from
`simulate.claim_codes` — the design and statistics `claims.prep` uses, vectorised over studies
— and a handful of the same simulated studies go through `load` + `claims.prep` end to end to
prove they agree.

`RATES` collects (claim, what, nominal, measured, MC SE, n studies); `test_print_rates` prints
the table (run with -s to see it)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import claims
from analysis import claims_noise as cn
from analysis import claims_stats as cs
from analysis.claims_design import design_frame
from analysis.load import load
from analysis.simulate import (
    IMAGE_SD,
    INTER_SD,
    INTER_SD_HIGH,
    RUN_IMAGE_SD,
    Simulation,
    claim_codes,
)

N = 2000
IMAGES = 500
NOISE = (f"interaction sd {INTER_SD}, image-effect sd {IMAGE_SD}, per-image sd "
         f"{RUN_IMAGE_SD:.2f}, {IMAGES} images")
RATES: list[tuple[str, str, float, float, float, int]] = []


def _hetero(s) -> float:
    """The upper end of the measured range for `mc` and M = 3, half of it elsewhere."""
    return INTER_SD_HIGH if s["kl_estimator"] == "mc" or s["M"] == 3 else INTER_SD_HIGH / 2


class _Frames(dict):
    """The design frame of a (grid, seeds), built on first use (it depends on them only)."""

    def __init__(self, factory):
        super().__init__()
        self.factory = factory

    def __missing__(self, key):
        sim = Simulation(*key, 1)
        frame = design_frame(load([sim.write(self.factory.mktemp("design"), 0)]).trials)
        assert frame["trial_key"].to_list() == sim.keys  # rows align with the arrays
        self[key] = frame
        return frame


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return _Frames(tmp_path_factory)


def _check(claim: str, what: str, codes: np.ndarray, false: tuple[int, ...], nominal: float):
    rate = float(np.isin(codes, false).mean())
    se = math.sqrt(nominal * (1 - nominal) / codes.size)
    RATES.append((claim, what, nominal, rate, se, codes.size))
    assert rate <= nominal + 3 * se, (claim, what, rate)


def _mix_effect(vae: float, steps: tuple[float, float]):
    def effect(s):
        if s["prior"] == "standard":
            return 0.0
        return vae + sum(steps[: s["M"] - 1])
    return effect


@pytest.mark.parametrize("noise", ["measured", "high, heteroscedastic"])
def test_null_reproduce_studies_rarely_give_a_verdict(frames, noise):
    inter = INTER_SD if noise == "measured" else _hetero
    sim = Simulation("reproduce", 3, N, prune=0.02, inter_sd=inter, rng_seed=1)
    for (claim, scope), c in claim_codes(sim, frames[("reproduce", 3)]).items():
        if claim in ("a", "b", "e", "e*", "g", "g*"):
            _check(claim, f"null, any verdict, {noise} ({scope.split(' · ')[-1][:8]})", c,
                   (cs.CODE_SUPPORTED, cs.CODE_CONTRADICTED), 0.05)
            _check(claim, f"null, false contradicted (Holm), {noise}", c,
                   (cs.CODE_CONTRADICTED,), 0.025)


def test_claim_a_supported_at_its_least_favourable_null(frames):
    # two steps far above 0, the third exactly 0: "supported" must stay ≤ 2.5%
    sim = Simulation("reproduce", 3, N, effect=_mix_effect(5.0, (5.0, 0.0)), rng_seed=2)
    for (claim, _), c in claim_codes(sim, frames[("reproduce", 3)]).items():
        if claim == "a":
            _check("a", "Mix3 − Mix2 = 0, others +5: false supported", c,
                   (cs.CODE_SUPPORTED,), 0.025)


def test_minimum_effect_test_at_its_null(frames):
    # every gain of (b) and of (g) against VampPrior exactly the reference 0.3 nat (against
    # the VAE 0.4): "the gain is excluded" anywhere in the family ≤ 2.5% (Holm)
    def effect(s):
        pm = s["prior"] == "pseudo_mixture"
        return 0.3 * (pm and s["M"] > 1) + 0.3 * (pm and s["K"] == 500)

    sim = Simulation("reproduce", 3, N, effect=effect, inter_sd=_hetero, rng_seed=14)
    codes = claim_codes(sim, frames[("reproduce", 3)], smallest_effect=0.3)
    for (claim, scope), c in codes.items():
        if claim in ("min b", "min g", "min g*"):
            _check(claim[4:], f"true gain = reference 0.3: false 'excluded' "
                   f"({scope.split(' · ')[-1][:8]})", c, (cs.MIN_EXCLUDED,), 0.025)


def _uniform(s) -> bool:
    return max(s["pi"]) - min(s["pi"]) < 1e-9


def test_claim_c_equivalence_at_its_least_favourable_nulls(frames):
    # "supported" needs every π inside the margin: its worst case is one π exactly at the
    # margin and the others at 0; "contradicted" (Holm) is worst with every π at the margin
    frame = frames[("figure4", 3)]
    one = Simulation("figure4", 3, N, rng_seed=3, effect=lambda s: 1.0 * (
        not _uniform(s) and s["pi"][0] == pytest.approx(0.1) and len(s["pi"]) == 2))
    for (claim, _), c in claim_codes(one, frame).items():
        if claim == "c":
            _check("c", "one π effect = margin (1 nat), others 0: false supported (TOST)",
                   c, (cs.CODE_SUPPORTED,), 0.05)
    every = Simulation("figure4", 3, N, rng_seed=4, inter_sd=INTER_SD_HIGH,
                       effect=lambda s: 0.0 if _uniform(s) else 1.0)
    for (claim, _), c in claim_codes(every, frame).items():
        if claim == "c":
            _check("c", "every π effect = margin, high noise: false contradicted (Holm)", c,
                   (cs.CODE_CONTRADICTED,), 0.05)


def _cell_noise(cells: int) -> tuple[float, float]:
    """The seed-level sd and test-image variance of a difference averaged over ``cells``
    independent pairs of configurations, at the simulator's default noise."""
    sd = math.sqrt(2 * (INTER_SD**2 + RUN_IMAGE_SD**2 / IMAGES) / cells)
    return sd, 2 * IMAGE_SD**2 / IMAGES / cells


def test_claim_c_power_at_measured_noise_is_the_computed_power(frames):
    # π effects 0, margin 1 nat, 3 seeds, one cell per comparison
    zero = Simulation("figure4", 3, N, rng_seed=5)
    sd, var_image = _cell_noise(1)
    predicted = float(cn.power_equivalence(1.0, sd, var_image, 3))
    for (claim, _), c in claim_codes(zero, frames[("figure4", 3)]).items():
        if claim != "c":
            continue
        RATES.append(("c", f"power of the claim (every π of the family): {NOISE}, margin 1, "
                      "3 seeds", 0.0, float((c == cs.CODE_SUPPORTED).mean()), 0.0, N))
        # the claim needs every comparison: far below one comparison's power
        assert (c == cs.CODE_SUPPORTED).mean() < predicted
    # one comparison: rerun its family's statistics to read the per-comparison rate
    from analysis import claims_design as cd
    from analysis import claims_rows as cr
    family = [x for x in cd.design(frames[("figure4", 3)]) if x.claim == "c"][:1]
    d, comp = cr.family_arrays(family, zero.ll, zero.found, zero.images)
    rate = float((cs.equivalence_family(d, 1.0, (comp["var_image"], comp["df"]))["code"]
                  == cs.CODE_SUPPORTED).mean())
    RATES.append(("c", f"power of one π comparison: {NOISE}, margin 1, 3 seeds (computed "
                  f"{predicted:.3f})", 0.0, rate, math.sqrt(rate * (1 - rate) / N), N))
    assert abs(rate - predicted) < 0.06, (rate, predicted)


def test_power_with_three_seeds_is_the_computed_power(frames):
    # each (b) comparison averages K 500 − 100 over M ∈ {1, 2, 3}: 3 cells per seed
    def effect(s):
        return 0.6 * (s["prior"] == "pseudo_mixture" and s["K"] == 500)

    sim = Simulation("reproduce", 3, N, effect=effect, rng_seed=11)
    sd, var_image = _cell_noise(3)
    predicted = float(cn.power_gain(0.6, sd, var_image, 3))
    for (claim, scope), c in claim_codes(sim, frames[("reproduce", 3)]).items():
        if claim == "b":
            rate = float((c == cs.CODE_SUPPORTED).mean())
            RATES.append(("b", f"power, gain 0.6 nat, {NOISE}, 3 seeds (computed "
                          f"{predicted:.3f})", 0.0, rate, math.sqrt(rate * (1 - rate) / N), N))
            assert abs(rate - predicted) < 0.04, (scope, rate, predicted)
    needed = cn.seeds_needed(cn.power_gain, 0.6, sd, var_image)
    assert cn.power_gain(0.6, sd, var_image, needed) >= 0.8 > cn.power_gain(0.6, sd, var_image,
                                                                          needed - 1)


def test_claim_d_rank_agreement(frames):
    unrelated = Simulation("reproduce", 3, N, bound_slope=0.0, rng_seed=15)
    for (claim, _), c in claim_codes(unrelated, frames[("reproduce", 3)]).items():
        if claim in ("d", "d*"):
            _check(claim, "bound unrelated to IS LL: false supported", c,
                   (cs.CODE_SUPPORTED,), 0.025)
    # the sharp null, per-seed Fisher z centred on atanh(0.5): both directions ≤ 2.5% each
    rng = np.random.default_rng(6)
    rho = np.tanh(math.atanh(0.5) + rng.normal(0.0, 0.3, (N, 3)))
    res = cs.rank_agreement(rho, 0.5)["claim"]
    _check("d", "per-seed ρ centred on the threshold: any verdict", res,
           (cs.CODE_SUPPORTED, cs.CODE_CONTRADICTED), 0.05)


@pytest.mark.parametrize("seeds, per_seed", [(3, 9), (3, 30), (10, 9), (40, 9)])
@pytest.mark.parametrize("icc", [0.0, 0.2, 0.5])
def test_claim_f_rate_clustered_by_seed_at_the_low_rate(seeds, per_seed, icc):
    # true collapse rate exactly LOW_RATE; a seed's rate ~ Beta with intra-seed correlation icc
    rng = np.random.default_rng(7)
    p = cs.LOW_RATE
    rates = (np.full((N, seeds), p) if icc == 0 else
             rng.beta(p * (1 - icc) / icc, (1 - p) * (1 - icc) / icc, (N, seeds)))
    k = rng.binomial(per_seed, rates)
    codes = np.array([cs.fraction_verdict(*cs.clustered_rate(row, np.full(seeds, per_seed))[2:])
                      for row in k])
    what = f"rate {p:g}, {seeds} seeds × {per_seed}, icc {icc}"
    _check("f", f"{what}: false supported", codes, (cs.CODE_SUPPORTED,), 0.025)
    _check("f", f"{what}: false contradicted", codes, (cs.CODE_CONTRADICTED,), 0.025)


def test_fewer_than_three_seeds_never_give_a_verdict(frames):
    # even a large effect, at the measured noise
    for seeds in (1, 2):
        sim = Simulation("reproduce", seeds, 500, effect=_mix_effect(3.0, (3.0, 3.0)),
                         rng_seed=8 + seeds)
        for (claim, _), c in claim_codes(sim, frames[("reproduce", seeds)]).items():
            assert set(np.unique(c)) <= {cs.CODE_FEW, cs.CODE_NO_DATA}, (seeds, claim)


def test_prep_end_to_end_agrees_with_the_vectorised_path(tmp_path_factory, frames):
    sim = Simulation("reproduce", 3, 4, effect=_mix_effect(0.6, (0.3, 0.0)), prune=0.03,
                     collapse_p=0.5, bound_slope=1.0, bound_sd=0.5, rng_seed=12)
    fig = Simulation("figure4", 3, 2, effect=lambda s: 0.3 * (s["M"] == 3), rng_seed=13)
    for s, grid in ((sim, "reproduce"), (fig, "figure4")):
        codes = claim_codes(s, frames[(grid, 3)], margin=claims.DEFAULT_PI_MARGIN)
        for i in range(s.n_studies):
            df = claims.prep(load([s.write(tmp_path_factory.mktemp("e2e"), i)]))
            got = {(r["claim"], r["scope"]): r["verdict"]
                   for r in claims.summary(df).iter_rows(named=True)}
            for key, c in codes.items():
                if key[0] != "e*":
                    assert got[key] == cs.VERDICTS[int(c[i])], (key, i)


def test_print_rates():
    print("\nclaim | what | nominal | measured | MC SE | studies")
    for claim, what, nominal, rate, se, n in RATES:
        print(f"{claim} | {what} | {nominal:.3f} | {rate:.4f} | {se:.4f} | {n}")
