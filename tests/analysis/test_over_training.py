"""analysis/over_training.py: the claims' comparisons on the validation MC ELBO per epoch,
checked against the per-seed differences computed by hand from the values the hand-made
studies were written with (SciPy for the intervals), with early stopping, claim (f) and a
study holding two budgets of the same configurations."""

from __future__ import annotations

import contextlib
import io
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analysis import budget_keys, claims, epoch_effects
from analysis import claims_design as cd
from analysis import over_training as ot
from analysis.load import load
from study.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from budget_study import write_budget_study  # noqa: E402
from v2_study import grid  # noqa: E402


def gain(s: dict) -> int:
    """VAE 0, MixM M: Mix(M+1) − MixM moves by one nat per epoch, crossing 0 at epoch 3."""
    return 0 if s["prior"] == "standard" else s["M"]


def elbo(s: dict, e: int) -> float:
    k_term = 0.1 * e + 0.02 * s["seed"] if s.get("K") == 500 else 0.0
    return -300.0 + 10.0 * e + gain(s) * (e - 3) + 0.03 * s["seed"] * gain(s) + k_term


def ll(s: dict, budget: int) -> float:
    return -250.0 + 2.0 * gain(s) + 0.1 * budget + 0.05 * s["seed"] * (1 + gain(s))


def by_hand(specs: list[dict], a, b, e: int, value=elbo) -> np.ndarray:
    """Per seed: the mean over A's trials of A − the B trial equal on everything but the
    compared setting (K where B is the VAE), one loop at a time."""
    out = []
    for seed in sorted({s["seed"] for s in specs}):
        diffs = []
        for sa in specs:
            if sa["seed"] != seed or not a(sa):
                continue
            for sb in specs:
                same_k = b(sb) and sb["prior"] == "standard" or sb.get("K") == sa.get("K")
                if sb["seed"] == seed and b(sb) and same_k \
                        and sb["kl_estimator"] == sa["kl_estimator"]:
                    diffs.append(value(sa, e) - value(sb, e))
        out.append(sum(diffs) / len(diffs))
    return np.array(out)


def mix(m: int):
    return lambda s: s["prior"] == "pseudo_mixture" and s["M"] == m


def vae(s: dict) -> bool:
    return s["prior"] == "standard"


@pytest.fixture(scope="module")
def one_budget(tmp_path_factory):
    specs = grid()
    root = write_budget_study(tmp_path_factory.mktemp("ot") / "one", specs, elbo, ll)
    return specs, ot.prep(load([root]))


def _row(df: pl.DataFrame, name: str, epoch: int, budget: int | None = None) -> dict:
    part = df.filter((pl.col("comparison") == name) & (pl.col("epoch") == epoch))
    if budget is not None:
        part = part.filter(pl.col("max_epochs") == budget)
    assert part.height == 1, part
    return part.row(0, named=True)


@pytest.mark.parametrize("name,a,b", [("Mix2 − Mix1", mix(2), mix(1)),
                                      ("Mix3 − Mix2", mix(3), mix(2)),
                                      ("Mix1 − VAE", mix(1), vae)])
def test_every_epoch_is_the_mean_and_t_interval_of_the_per_seed_differences(one_budget, name,
                                                                            a, b):
    specs, df = one_budget
    for e in range(1, 7):
        d = by_hand(specs, a, b, e)
        r = _row(df, name, e)
        low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        assert r["seeds"] == 3 and r["level"] == "95%"
        assert r["difference"] == pytest.approx(d.mean())
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
        assert r["sign"] == int(np.sign(d.mean()))


def test_verdicts_per_epoch_and_stable_since(one_budget):
    _, df = one_budget
    verdicts = [_row(df, "Mix2 − Mix1", e)["verdict"] for e in range(1, 7)]
    # −2, −1 nats: contradicted; 0.03 ± 0.017 (t 1.7, 2 df): inconclusive; then supported
    assert verdicts == ["contradicted"] * 2 + ["inconclusive"] + ["supported"] * 3
    table = ot.stability(df).filter(pl.col("claim") != "f")
    status = dict(zip(table["comparison"], table["status"], strict=True))
    assert status["Mix2 − Mix1"] == status["Mix3 − Mix2"] == "stable since epoch 4 of 6"
    # Mix1 − VAE at epoch 3: 0.15 + 0.04·seed (K = 500's term halved): supported already
    assert status["Mix1 − VAE"] == "stable since epoch 3 of 6"
    assert status["K=500 − K=100"] == "stable since epoch 1 of 6"  # 0.1·e + 0.02·seed > 0
    slopes = dict(zip(table["comparison"], table["slope_last"], strict=True))
    assert slopes["Mix2 − Mix1"] == pytest.approx(1.0)  # (e − 3) + 0.03·seed: 1 nat per epoch
    row = table.filter(pl.col("comparison") == "Mix2 − Mix1").row(0, named=True)
    assert row["difference_then"] == pytest.approx(by_hand(grid(), mix(2), mix(1), 4).mean())
    # the claims section's verdict on the test IS LL beside it (ll: Mix2 − Mix1 = 2 + …)
    assert row["claims_verdict"] == "supported"


def test_stable_since_is_the_first_epoch_of_the_last_run_of_equal_states():
    assert ot.stable_since([(-1, "c"), (-1, "c"), (1, "i"), (1, "s"), (1, "s")]) == 4
    assert ot.stable_since([(1, "s"), (1, "s"), (1, "i")]) == 3
    assert ot.stable_since([(1, "s")] * 4) == 1
    # a sign that flips back counts: the state must hold at every epoch since E
    assert ot.stable_since([(1, "i"), (-1, "i"), (1, "i")]) == 3


def test_still_moving_when_the_last_epoch_changed_the_verdict(tmp_path):
    specs = grid()
    root = write_budget_study(tmp_path / "s", specs, elbo, ll, budgets=(4,))
    table = ot.stability(ot.prep(load([root])))
    row = table.filter(pl.col("comparison") == "Mix2 − Mix1").row(0, named=True)
    assert row["status"] == ot.STILL_MOVING and row["stable_since"] == 4
    assert row["verdict"] == "supported"


def test_an_early_stopped_run_returns_its_best_epoch_at_every_later_epoch(tmp_path):
    specs = grid()

    def loss(s, e):  # Mix2 of seed 2 gets worse after epoch 3: stops at 5 (patience 2)
        if s["prior"] == "pseudo_mixture" and s["M"] == 2 and s["seed"] == 2 and e > 3:
            return 270.0 + e
        return 300.0 - 10.0 * e

    root = write_budget_study(tmp_path / "s", specs, elbo, ll, loss=loss, patience=2)
    frames = load([root])
    frame = cd.design_frame(frames.trials)
    values = epoch_effects.returned(frames.epochs, frame)
    stopped = frame.filter((pl.col("M") == 2) & (pl.col("seed") == 2)
                           & (pl.col("prior") == "pseudo_mixture"))
    assert stopped["epochs_run"].to_list() == [5, 5] and stopped["best_epoch"].to_list() == [3, 3]
    for row, spec in zip(stopped["row"], [s for s in specs if mix(2)(s) and s["seed"] == 2],
                         strict=True):
        mine = values.filter(pl.col("row") == row).sort("epoch")
        assert mine["best_epoch"].to_list() == [1, 2, 3, 3, 3, 3]
        assert mine["val_elbo_mc"].to_list() == pytest.approx(
            [elbo(spec, e) for e in (1, 2, 3, 3, 3, 3)])

    def returned(s, e):
        return elbo(s, min(e, 3)) if mix(2)(s) and s["seed"] == 2 else elbo(s, e)

    df = ot.prep(frames)
    for e in (4, 6):
        d = by_hand(specs, mix(2), mix(1), e, value=returned)
        assert _row(df, "Mix2 − Mix1", e)["difference"] == pytest.approx(d.mean())


@pytest.fixture(scope="module")
def two_budgets(tmp_path_factory):
    specs = grid()
    root = write_budget_study(tmp_path_factory.mktemp("ot") / "two", specs, elbo, ll,
                              budgets=(4, 8))
    return root, ot.prep(load([root]))


def test_two_budgets_one_line_each_drawn_at_the_largest(two_budgets):
    _, df = two_budgets
    mine = df.filter(pl.col("comparison") == "Mix2 − Mix1")
    assert mine["series"].n_unique() == 1  # one comparison across its budgets
    assert sorted(mine["max_epochs"].unique().to_list()) == [4, 8]
    assert mine.filter(pl.col("largest"))["max_epochs"].unique().to_list() == [8]
    assert mine.filter(pl.col("max_epochs") == 4)["epoch"].to_list() == [1, 2, 3, 4]
    # epochs 1–4 of the 8-epoch trials are the 4-epoch trials' numbers: the same lines
    for e in range(1, 5):
        small, large = _row(df, "Mix2 − Mix1", e, 4), _row(df, "Mix2 − Mix1", e, 8)
        for col in ("difference", "ci_low", "ci_high", "verdict", "seeds"):
            assert small[col] == large[col]
    table = ot.stability(df).filter(pl.col("comparison") == "Mix2 − Mix1").sort("max_epochs")
    assert table["status"].to_list() == [ot.STILL_MOVING, "stable since epoch 4 of 8"]
    assert table["claims_verdict"].to_list() == ["supported", "supported"]
    assert "max 4 epochs" in table["budget"][0] and "max 8 epochs" in table["budget"][1]


def spread(s: dict, e: int) -> float | None:
    """greedy: 0.02 → 0.04 → falling by 0.3 per epoch (collapses); lse: rising (healthy)."""
    if s["prior"] == "standard":
        return None
    scale = (1 + 0.05 * s["seed"]) * (s["K"] / 100) ** 0.05  # every greedy spread < 0.05
    if s["kl_estimator"] == "lse":
        return 0.02 * e * scale
    return (0.02 if e == 1 else 0.04 * 0.3 ** (e - 2)) * scale


def test_claim_f_per_epoch_collapse_rate_and_geometric_mean_spread(tmp_path):
    specs = [s for s in grid(estimators=("greedy", "lse"), collapsed=("greedy",))]
    frames = load([write_budget_study(tmp_path / "f", specs, elbo, ll, spread=spread)])
    df = ot.prep(frames).filter(pl.col("claim") == "f")
    greedy = df.filter(pl.col("scope").str.ends_with("greedy")).sort("epoch")
    # epoch 1: small and no earlier record → collapsed; epoch 2: risen above its peak → not
    # yet spread (no trial judged); from epoch 3 on it fell below half its peak → collapsed
    assert greedy["verdict"].to_list() == ["contradicted", "no data"] + ["contradicted"] * 4
    assert greedy["difference"].to_list()[2:] == [1.0] * 4
    assert ot.stability(df).filter(pl.col("scope").str.ends_with("greedy"))["status"][0] \
        == "stable since epoch 3 of 6"
    # at the budget, the claims section's rate and verdict
    section = claims.prep(frames).filter(pl.col("claim") == "f")
    for r in ot.stability(df).iter_rows(named=True):
        mine = section.filter(pl.col("scope") == r["scope"]).row(0, named=True)
        assert r["difference"] == pytest.approx(mine["difference"])
        assert r["verdict"] == mine["verdict"] == r["claims_verdict"]
    # the drawn spread: per seed the geometric mean over its trials, t over seeds of the log
    for e in (1, 4):
        logs = [np.mean([math.log(spread(s, e)) for s in specs if s["seed"] == seed
                         and s["kl_estimator"] == "greedy" and s["prior"] != "standard"])
                for seed in (0, 1, 2)]
        low, high = stats.t.interval(0.95, 2, loc=np.mean(logs), scale=stats.sem(logs))
        r = greedy.row(e - 1, named=True)
        assert r["spread"] == pytest.approx(math.exp(np.mean(logs)))
        assert (r["spread_low"], r["spread_high"]) == pytest.approx((math.exp(low),
                                                                     math.exp(high)))


def test_a_study_without_validation_mc_elbo_is_skipped(frames):
    assert ot.prep(frames).is_empty()  # study alpha: written before val_elbo_mc


def test_configuration_is_shared_by_the_budgets_of_one_configuration(two_budgets):
    root, _ = two_budgets
    frame = cd.design_frame(load([root]).trials)
    with_seed = frame.with_columns(budget_keys.configuration(frame))
    per_config = with_seed.group_by("configuration").agg(pl.col("max_epochs").sort(),
                                                        pl.col("seed").n_unique())
    assert per_config.height == frame.height // 2
    assert per_config["max_epochs"].to_list() == [[4, 8]] * per_config.height
    models = frame.with_columns(budget_keys.configuration(frame, seed=False))
    assert models["configuration"].n_unique() == per_config.height // 3  # 3 seeds each


def test_report_draws_both_outputs_for_a_two_budget_study(two_budgets, tmp_path):
    root, _ = two_budgets
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["report", str(root), "--out", str(tmp_path), "--only", "over_training",
                     "budget_curves"])
    assert code == 0, stderr.getvalue()
    for name in ("over_training", "budget_curves"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
        assert (tmp_path / "tables" / f"{name}.csv").is_file()
    per_epoch = pl.read_csv(tmp_path / "tables" / "over_training_epochs.csv")
    assert sorted(per_epoch["max_epochs"].unique().to_list()) == [4, 8]
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "stable since epoch 4 of 8" in md and "Validation MC ELBO, not IS LL" in md


def test_claim_c_is_the_tost_at_the_study_margin_with_its_90_percent_interval(tmp_path):
    specs = [dict(kl_estimator="greedy", prior="pseudo_mixture", M=2, K=100, pi=pi, seed=seed)
             for pi in (None, [0.7, 0.3]) for seed in (0, 1, 2)]

    def elbo_pi(s, e):  # π = (0.7, 0.3): 0.5 nat worse at epoch 1, 0.05 + 0.01·seed from 3
        skew = (0.5 if e == 1 else 0.05 + 0.01 * s["seed"]) if s.get("pi") else 0.0
        return -300.0 + e + 0.02 * s["seed"] * e - skew

    df = ot.prep(load([write_budget_study(tmp_path / "c", specs, elbo_pi, ll, budgets=(4,))]))
    rows = df.filter(pl.col("claim") == "c").sort("epoch")
    assert rows["level"].unique().to_list() == ["90%"] and rows["margin"][0] == 0.3
    d = np.array([-(0.05 + 0.01 * seed) for seed in (0, 1, 2)])
    low, high = stats.t.interval(0.90, 2, loc=d.mean(), scale=stats.sem(d))
    last = rows.row(-1, named=True)
    assert last["difference"] == pytest.approx(d.mean())
    assert (last["ci_low"], last["ci_high"]) == pytest.approx((low, high))
    # epoch 1: −0.5 for every seed, outside ±0.3 → π matters; from epoch 2 inside → supported
    assert rows["verdict"].to_list() == ["contradicted"] + ["supported"] * 3
    assert ot.stability(rows)["status"][0] == "stable since epoch 2 of 4"


def test_last_slope_is_the_least_squares_slope_over_the_last_quarter():
    epochs = np.arange(1, 9)
    values = np.array([5.0, 4, 3, 2, 2.5, 3.0, 3.9, 5.1])  # last quarter: epochs 7, 8
    assert ot.last_slope(epochs, values) == pytest.approx(1.2)
    epochs = np.arange(1, 13)  # last quarter: 10, 11, 12 → SciPy's regression slope
    values = np.sin(epochs)
    assert ot.last_slope(epochs, values) == pytest.approx(
        stats.linregress(epochs[-3:], values[-3:]).slope)
    assert ot.last_slope(np.array([1, 2]), np.array([np.nan, 1.0])) is None
