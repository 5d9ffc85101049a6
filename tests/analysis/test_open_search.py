"""The open-search part of the report: the search rebuilt from Parquet agrees with the journal
the search left, and the importances the report prints are Optuna's own on that journal."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import optuna
import polars as pl
import pytest

from analysis import importances, open_search, search_study
from analysis.load import load
from search_spaces.simplex import floor_simplex, stick_breaking

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from open_study import journal_study, write_open_study  # noqa: E402

N_TRIALS = 24


@pytest.fixture(scope="module")
def open_dir(tmp_path_factory):
    return write_open_study(tmp_path_factory.mktemp("open") / "open_search_digits", N_TRIALS)


@pytest.fixture(scope="module")
def open_frames(open_dir):
    return load([open_dir])


@pytest.fixture(scope="module")
def rebuilt(open_frames):
    return search_study.rebuild(open_frames, open_frames.studies["study"][0])


@pytest.mark.parametrize("m", [2, 3, 4])
def test_fractions_invert_the_floored_stick_breaking(m):
    rng = np.random.default_rng(m)
    for u in rng.uniform(0, 1, (50, m - 1)):
        pi = floor_simplex(stick_breaking(list(u)))
        assert search_study.fractions_of(pi) == pytest.approx(list(u), abs=1e-9)


def test_rebuilt_study_reproduces_the_journal(open_dir, rebuilt):
    """Same trials in the same order, same params, same distributions, same values."""
    journal = journal_study(open_dir).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    ours = rebuilt.trials
    assert rebuilt.left_out == [] and rebuilt.kind == "open" and len(ours) == N_TRIALS
    assert (rebuilt.metric, rebuilt.direction) == ("val_elbo_mc", "maximize")
    for theirs, mine in zip(journal, ours, strict=True):
        assert mine.distributions == theirs.distributions
        assert mine.params.keys() == theirs.params.keys()
        for name, value in theirs.params.items():
            if isinstance(value, float):
                assert mine.params[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
            else:
                assert mine.params[name] == value, name
        assert mine.value == theirs.value
    # π appears as the space's stick-breaking fractions, K as a log-int, lr as a log-float
    dists = {n: d for t in ours for n, d in t.distributions.items()}
    assert dists["pi_0"] == optuna.distributions.FloatDistribution(0.0, 1.0)
    assert dists["K"] == optuna.distributions.IntDistribution(50, 1000, log=True)
    assert dists["lr"].log and isinstance(dists["arch"],
                                          optuna.distributions.CategoricalDistribution)


def test_metric_values_are_the_last_epoch_or_the_trial_column(open_frames):
    epochs = open_frames.epochs.collect()
    got = search_study.metric_values(open_frames, "val_elbo_mc")
    for key, value in got.select("trial_key", "value").iter_rows():
        rows = epochs.filter(pl.col("trial_key") == key).sort("epoch")
        assert value == rows["val_elbo_mc"][-1]
    ll = search_study.metric_values(open_frames, "test_ll").sort("trial_key")
    assert ll["value"].to_list() == open_frames.trials.sort("trial_key")["test_ll"].to_list()
    with pytest.raises(ValueError, match="not a column"):
        search_study.metric_values(open_frames, "nonsense")


def test_frame_round_trip_keeps_every_trial(rebuilt):
    df = search_study.to_frame([rebuilt])
    again = search_study.from_frame(df).get_trials()
    for a, b in zip(rebuilt.trials, again, strict=True):
        assert (a.params, a.distributions, a.value, a.user_attrs) == (
            b.params, b.distributions, b.value, b.user_attrs)


@pytest.mark.filterwarnings("ignore:PedAnovaImportanceEvaluator computes:UserWarning")
def test_report_importances_agree_with_optunas_own_call_on_the_journal(open_dir, open_frames,
                                                                       monkeypatch):
    """The table the report prints = get_param_importances on the journal's study, for both
    evaluators and both targets, to the last digit."""
    monkeypatch.setattr(importances, "N_BOOT", 3)
    df = importances.prep(open_frames)
    journal = journal_study(open_dir)
    test_ll = dict(open_frames.trials.select("trial_key", "test_ll").iter_rows())
    # IS LL negated: PED-ANOVA reads a target as lower-is-better (Optuna's advice)
    targets = {"val_elbo_mc": None,
               "test_ll": lambda t: -test_ll[t.user_attrs["trial_key"]]}
    for target, fn in targets.items():
        for name, make in importances.EVALUATORS.items():
            theirs = optuna.importance.get_param_importances(journal, evaluator=make(),
                                                             target=fn)
            part = df.filter((pl.col("target") == target) & (pl.col("evaluator") == name))
            assert part["param"].to_list() == list(theirs)
            assert part["importance"].to_list() == [float(v) for v in theirs.values()]
    assert set(df["optuna"]) == {optuna.__version__}
    # the synthetic LL is driven by lr: both evaluators put it first for test IS LL
    first = df.filter((pl.col("target") == "test_ll") & (pl.col("rank") == 1))
    assert set(first["param"]) == {"lr"}


def test_bootstrap_is_the_percentiles_of_importances_on_resampled_trials(rebuilt):
    params = list(importances.importances(rebuilt.study, "PED-ANOVA", None))
    boot = importances.bootstrap(rebuilt.study, "PED-ANOVA", None, params, n_boot=4, seed=7)
    rng = np.random.default_rng(7)
    trials = rebuilt.trials
    for b in range(4):
        picks = rng.integers(0, len(trials), len(trials))
        study = optuna.create_study(direction="maximize")
        study.add_trials([trials[i] for i in picks])
        got = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), params=params)
        assert boot[b] == pytest.approx([got[p] for p in params])


def test_test_ll_target_is_negated_for_ped_anova(rebuilt):
    """PED-ANOVA with a target takes the lowest values as the best: IS LL goes in negated,
    so its top trials are those of the highest IS LL."""
    trial = rebuilt.trials[0]
    assert importances.target_of(rebuilt, "val_elbo_mc") is None
    assert importances.target_of(rebuilt, "test_ll")(trial) == -trial.user_attrs["test_ll"]
    # the same importances as on a study whose values are IS LL, maximised
    as_values = optuna.create_study(direction="maximize")
    as_values.add_trials([optuna.trial.create_trial(
        value=t.user_attrs["test_ll"], params=t.params, distributions=t.distributions)
        for t in rebuilt.trials])
    ours = importances.importances(rebuilt.study, "PED-ANOVA",
                                   importances.target_of(rebuilt, "test_ll"))
    theirs = importances.importances(as_values, "PED-ANOVA", None)
    assert ours == pytest.approx(theirs)


def _ranked(trials, rows):
    return pl.DataFrame(
        [{"study": "s", "target": "t", "evaluator": "e", "param": p, "importance": i,
          "low": lo, "high": hi, "trials": trials} for p, i, lo, hi in rows])


def test_rank_sentence_says_when_the_trials_are_too_few_or_the_intervals_overlap():
    separated = [("lr", 0.7, 0.6, 0.8), ("K", 0.2, 0.1, 0.3), ("M", 0.1, 0.0, 0.2)]
    few = importances.rank_sentence(_ranked(importances.MIN_TRIALS - 1, separated))
    assert "too few to rank" in few
    assert "lr comes first" in importances.rank_sentence(_ranked(importances.MIN_TRIALS,
                                                                 separated))
    overlapping = [("lr", 0.5, 0.3, 0.8), ("K", 0.4, 0.2, 0.6), ("M", 0.1, 0.0, 0.2)]
    text = importances.rank_sentence(_ranked(40, overlapping))
    assert "no parameter comes clearly first" in text and "lr and K overlap" in text


def test_top_trials_rank_by_the_metric_and_by_test_ll(open_frames):
    top = open_search.prep_top(open_frames, top=5)
    assert top.height == 5 and top["rank_metric"].to_list() == [1, 2, 3, 4, 5]
    full = open_search.prep(open_frames)
    assert top["value"][0] == full["value"].max()
    best_ll = full.sort("test_ll", descending=True)["trial_key"][0]
    ranks = open_search.prep_top(open_frames, top=N_TRIALS)
    assert ranks.filter(pl.col("rank_test_ll") == 1)["trial_key"].to_list() == [best_ll]
    assert {"arch", "lr", "pi", "K"} <= set(top.columns)


def test_a_grid_study_is_rebuilt_with_categorical_settings(frames):
    """Study alpha has no study.json: a grid ranked by test_ll, its varying settings as
    categorical parameters."""
    got = search_study.rebuild(frames, "alpha")
    assert (got.kind, got.metric) == ("grid", "test_ll")
    done = frames.trials.filter(pl.col("state") == "COMPLETED")
    assert len(got.trials) == done.height
    names = set(got.trials[0].params)
    assert {"arch", "M", "seed", "pi_label"} <= names
    assert all(isinstance(d, optuna.distributions.CategoricalDistribution)
               for d in got.trials[0].distributions.values())


def test_mixture_weights_space_is_rebuilt_with_its_categorical_pi(tmp_path):
    root = write_open_study(tmp_path / "open_search_digits", 8, space="mixture_weights")
    frames = load([root])
    got = search_study.rebuild(frames, frames.studies["study"][0])
    journal = journal_study(root).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert got.left_out == [] and len(got.trials) == 8
    for theirs, mine in zip(journal, got.trials, strict=True):
        assert (mine.params, mine.distributions) == (theirs.params, theirs.distributions)
    assert any(name.startswith("pi_M") for t in got.trials for name in t.params)


def test_a_trial_the_space_cannot_give_back_is_left_out_with_a_note(open_dir, tmp_path):
    """A π under the space's 0.02 floor is not one the space draws: that trial is named."""
    trials = pl.read_parquet(open_dir / "results" / "trials.parquet")
    bad = trials.filter(pl.col("M") == 2)["trial_key"][0]
    trials = trials.with_columns(
        pl.when(pl.col("trial_key") == bad).then(pl.lit([0.01, 0.99]))
        .otherwise(pl.col("pi")).alias("pi"))
    copy = tmp_path / "open_search_digits"
    (copy / "results").mkdir(parents=True)
    trials.write_parquet(copy / "results" / "trials.parquet")
    for name in ("study.json", "results/epochs.parquet"):
        (copy / name).write_bytes((open_dir / name).read_bytes())
    frames = load([copy])
    got = search_study.rebuild(frames, frames.studies["study"][0])
    assert len(got.trials) == N_TRIALS - 1
    assert len(got.left_out) == 1 and got.left_out[0].startswith(f"{bad}: ")
    assert "gives back another pi" in got.left_out[0]
    notes = open_search.notes(open_search.prep(frames))
    assert any(f"left out (not rebuilt): {bad}" in n for n in notes)


def test_the_order_is_the_journals_even_where_trials_started_together(open_dir, tmp_path):
    """Two trials that started together can be written in either order; fANOVA's forest
    depends on the order of its rows, so the rebuilt study takes the journal's numbers, and
    falls back on started_at (named in ``order``) without a journal."""
    from study import store

    assert search_study.JOURNAL_FILE == store.OPTUNA_JOURNAL
    trials = pl.read_parquet(open_dir / "results" / "trials.parquet")
    first, second = trials["started_at"][0], trials["started_at"][1]
    swapped = trials.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(second))
        .when(pl.int_range(pl.len()) == 1).then(pl.lit(first))
        .otherwise(pl.col("started_at")).alias("started_at"))
    copy = tmp_path / "open_search_digits"
    (copy / "results").mkdir(parents=True)
    swapped.write_parquet(copy / "results" / "trials.parquet")
    for name in ("study.json", "results/epochs.parquet", "optuna.journal"):
        (copy / name).write_bytes((open_dir / name).read_bytes())
    frames = load([copy])
    got = search_study.rebuild(frames, frames.studies["study"][0])
    journal = journal_study(copy)
    assert got.order == "journal"
    assert [t.user_attrs["trial_key"] for t in got.trials] == [
        t.user_attrs["trial_key"] for t in journal.get_trials(
            states=(optuna.trial.TrialState.COMPLETE,))]
    assert importances.importances(got.study, "fANOVA", None) == \
        optuna.importance.get_param_importances(
            journal, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    (copy / "optuna.journal").unlink()
    without = search_study.rebuild(load([copy]), frames.studies["study"][0])
    assert without.order == "started_at"
    keys = [t.user_attrs["trial_key"] for t in without.trials]
    assert keys[:2] == trials["trial_key"][:2].reverse().to_list()
