"""Calibration of the claims' machinery on simulated studies (analysis.simulate): on ≥ 2,000
null studies per claim the false-verdict rate is ≤ its nominal level + 3 Monte Carlo standard
errors; a true effect of a stated size with 3 seeds is found with a stated power; fewer than 3
seeds never give a verdict. The verdicts come from `simulate.claim_codes` — the design and
statistics functions `claims.prep` uses, vectorised over studies — and a handful of the same
simulated studies go through `load` + `claims.prep` end to end to prove they agree.

`RATES` collects (claim, what, nominal, measured, MC SE, n studies); `test_print_rates` prints
the table (run with -s to see it)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import claims
from analysis import claims_stats as cs
from analysis.claims_design import design_frame
from analysis.load import load
from analysis.simulate import Simulation, claim_codes

N = 2000
RATES: list[tuple[str, str, float, float, float, int]] = []


def _frame(tmp_path_factory, sim: Simulation):
    root = sim.write(tmp_path_factory.mktemp("design"), 0)
    frame = design_frame(load([root]).trials)
    assert frame["trial_key"].to_list() == sim.keys  # rows align with the simulated arrays
    return frame


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


@pytest.fixture(scope="module")
def reproduce_null(tmp_path_factory):
    sim = Simulation("reproduce", 3, N, prune=0.02, rng_seed=1)
    return sim, claim_codes(sim, _frame(tmp_path_factory, sim))


def test_null_reproduce_studies_rarely_give_a_verdict(reproduce_null):
    _, codes = reproduce_null
    for (claim, scope), c in codes.items():
        if claim in ("a", "b", "e", "e*"):
            _check(claim, f"null, any verdict ({scope.split(' · ')[-1]})", c,
                   (cs.CODE_SUPPORTED, cs.CODE_CONTRADICTED), 0.05)
            _check(claim, "null, false contradicted (Holm)", c, (cs.CODE_CONTRADICTED,), 0.025)


def test_claim_a_supported_at_its_least_favourable_null(tmp_path_factory):
    # two steps far above 0, the third exactly 0: "supported" must stay ≤ 2.5%
    sim = Simulation("reproduce", 3, N, effect=_mix_effect(5.0, (5.0, 0.0)), rng_seed=2)
    codes = claim_codes(sim, _frame(tmp_path_factory, sim))
    for (claim, _), c in codes.items():
        if claim == "a":
            _check("a", "Mix3 − Mix2 = 0, others +5: false supported", c,
                   (cs.CODE_SUPPORTED,), 0.025)


def _uniform(s) -> bool:
    return max(s["pi"]) - min(s["pi"]) < 1e-9


def test_claim_c_equivalence_at_its_least_favourable_nulls(tmp_path_factory):
    # "supported" needs every π inside the margin: its worst case is one π exactly at the
    # margin and the others at 0; "contradicted" (Holm) is worst with every π at the margin
    one = Simulation("figure4", 3, N, rng_seed=3, effect=lambda s: 1.0 * (
        not _uniform(s) and s["pi"][0] == pytest.approx(0.1) and len(s["pi"]) == 2))
    frame = _frame(tmp_path_factory, one)
    for (claim, _), c in claim_codes(one, frame).items():
        if claim == "c":
            _check("c", "one π effect = margin (1 nat), others 0: false supported (TOST)",
                   c, (cs.CODE_SUPPORTED,), 0.05)
    every = Simulation("figure4", 3, N, rng_seed=4, effect=lambda s: 0.0 if _uniform(s) else 1.0)
    for (claim, _), c in claim_codes(every, frame).items():
        if claim == "c":
            _check("c", "every π effect = margin: false contradicted (Holm)", c,
                   (cs.CODE_CONTRADICTED,), 0.05)
    zero = Simulation("figure4", 3, N, rng_seed=5)
    power = [float((c == cs.CODE_SUPPORTED).mean())
             for (claim, _), c in claim_codes(zero, frame).items() if claim == "c"]
    RATES.append(("c", "power: π effects 0, seed sd 0.15, 3 seeds → supported", 0.0,
                  min(power), 0.0, N))
    assert min(power) >= 0.80


def test_claim_d_rank_agreement(tmp_path_factory):
    unrelated = Simulation("reproduce", 3, N, bound_slope=0.0, rng_seed=15)
    codes = claim_codes(unrelated, _frame(tmp_path_factory, unrelated))
    for (claim, _), c in codes.items():
        if claim == "d":
            _check("d", "bound unrelated to IS LL: false supported", c, (cs.CODE_SUPPORTED,),
                   0.025)
    # the sharp null, per-seed Fisher z centred on atanh(0.5): both directions ≤ 2.5% each
    rng = np.random.default_rng(6)
    rho = np.tanh(math.atanh(0.5) + rng.normal(0.0, 0.3, (N, 3)))
    res = cs.rank_agreement(rho, 0.5)["claim"]
    _check("d", "per-seed ρ centred on the threshold: any verdict", res,
           (cs.CODE_SUPPORTED, cs.CODE_CONTRADICTED), 0.05)


def test_claim_f_fraction_at_one_half():
    k = np.random.default_rng(7).binomial(30, 0.5, N)
    _check("f", "30 runs, true collapse rate ½: any verdict", cs.fraction_verdict(k, 30),
           (cs.CODE_SUPPORTED, cs.CODE_CONTRADICTED), 0.05)


def test_fewer_than_three_seeds_never_give_a_verdict(tmp_path_factory):
    # issue row 4: seed sd 0.15, per-image sd 1.5, 500 images; even a large effect
    for seeds in (1, 2):
        sim = Simulation("reproduce", seeds, 500, effect=_mix_effect(3.0, (3.0, 3.0)),
                         rng_seed=8 + seeds)
        for (claim, _), c in claim_codes(sim, _frame(tmp_path_factory, sim)).items():
            assert set(np.unique(c)) <= {cs.CODE_FEW, cs.CODE_NO_DATA}, (seeds, claim)


def test_power_with_three_seeds(tmp_path_factory):
    # each step +1 nat, lse better than greedy by 1 nat, mc by 0.5: seed sd 0.15
    def effect(s):
        est = {"greedy": 0.0, "lse": 1.0, "mc": 0.5}[s["kl_estimator"]]
        k = 1.0 if s["K"] == 500 else 0.0
        return _mix_effect(1.0, (1.0, 1.0))(s) + (est + k) * (s["prior"] != "standard")

    sim = Simulation("reproduce", 3, N, effect=effect, rng_seed=11)
    codes = claim_codes(sim, _frame(tmp_path_factory, sim))
    power = {claim: [] for claim in ("a", "b", "e")}
    for (claim, _), c in codes.items():
        if claim in ("a", "b"):
            power[claim].append(float((c == cs.CODE_SUPPORTED).mean()))
        if claim == "e":  # greedy is worse: the claim is contradicted
            power[claim].append(float((c == cs.CODE_CONTRADICTED).mean()))
    for claim, stated in (("a", 0.9), ("b", 0.9), ("e", 0.9)):
        RATES.append((claim, "power: +1 nat per comparison, seed sd 0.15, 3 seeds", 0.0,
                      min(power[claim]), 0.0, N))
        assert min(power[claim]) >= stated, (claim, power[claim])


def test_prep_end_to_end_agrees_with_the_vectorised_path(tmp_path_factory):
    sim = Simulation("reproduce", 3, 6, effect=_mix_effect(0.6, (0.3, 0.0)), prune=0.03,
                     collapse_p=0.5, bound_slope=1.0, bound_sd=0.5, rng_seed=12)
    vector = claim_codes(sim, _frame(tmp_path_factory, sim))
    fig = Simulation("figure4", 3, 4, effect=lambda s: 0.3 * (s["M"] == 3), rng_seed=13)
    vector_fig = claim_codes(fig, _frame(tmp_path_factory, fig))
    for s, codes in ((sim, vector), (fig, vector_fig)):
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
