"""Reading study folders: labels, derived columns, mixed schemas, bad folders."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.load import ResultsError, load, spread_over_k


def test_alpha_is_read_with_derived_columns(frames, specs):
    t = frames.trials
    assert t.height == len(specs)
    assert frames.studies["study"].to_list() == ["alpha"]
    assert set(t["study"]) == {"alpha"}
    # model labels: standard → VAE, pseudo_mixture M → MixM; the VAE has no K
    vae = t.filter(pl.col("prior") == "standard")
    assert set(vae["model"]) == {"VAE"} and vae["K"].null_count() == vae.height
    mix = t.filter(pl.col("prior") == "pseudo_mixture")
    assert set(mix["model"]) == {"Mix1", "Mix2", "Mix3"}
    assert (mix["model"] == "Mix" + mix["M"].cast(pl.String)).all()
    # π varies between completed trials, so it is a grouping key; nothing else does
    assert frames.extra_keys == ("pi_label",)
    skewed = t.filter(pl.col("pi_label") == "(0.7, 0.3)")
    assert not skewed["pi_uniform"].any()
    assert skewed["label"].unique().to_list() == ["mlp Mix2 K=100 π=(0.7, 0.3)"]
    assert t.filter(pl.col("model") == "VAE")["label"].unique().to_list() == ["mlp VAE"]
    # relative trial folders resolve against the study folder
    assert t["trial_path"].str.ends_with("trials/t000").any()
    # epochs and test_ll are lazy and tagged with the label
    assert isinstance(frames.epochs, pl.LazyFrame)
    assert frames.test_ll.select(pl.col("study").unique()).collect()["study"].to_list() == [
        "alpha"]


def test_results_folder_itself_is_accepted(alpha, specs):
    assert load([alpha / "results"]).trials.height == len(specs)


def test_mixed_schema_merge_labels_by_folder_and_fills_missing_columns(merged):
    t = merged.trials
    # both studies are called "alpha": the labels fall back to the folder names
    assert merged.studies["study"].to_list() == ["alpha", "beta_laptop"]
    beta = t.filter(pl.col("study") == "beta_laptop")
    assert beta.height == 4
    # columns the old schema lacks are typed nulls, not errors
    assert beta["test_elbo_mc"].null_count() == 4 and beta["kl_estimator"].null_count() == 4
    assert t.schema["M"] == pl.Int64 and t.schema["pi"] == pl.List(pl.Float64)
    # π omitted means uniform; a column missing in one study is not a "varying" setting
    assert beta.filter(pl.col("M") == 1)["pi"].to_list() == [[1.0]] * 4
    assert merged.extra_keys == ("pi_label",)
    epochs = merged.epochs.collect()
    assert set(epochs["study"]) == {"alpha", "beta_laptop"}
    assert epochs.filter(pl.col("study") == "beta_laptop")["beta"].null_count() > 0


def test_missing_folder_is_one_line_error(tmp_path):
    with pytest.raises(ResultsError, match="does not exist") as info:
        load([tmp_path / "nope"])
    assert "\n" not in str(info.value)


def test_folder_without_results_is_an_error(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(ResultsError, match="no results in"):
        load([tmp_path])


def test_empty_trials_file_is_an_error(tmp_path):
    (tmp_path / "results").mkdir()
    pq.write_table(pa.table({"trial_key": pa.array([], pa.string())}),
                   tmp_path / "results" / "trials.parquet")
    with pytest.raises(ResultsError, match="no trials yet"):
        load([tmp_path])


def test_unreadable_trials_file_is_an_error(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "trials.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ResultsError, match="cannot read"):
        load([tmp_path])


def test_trial_written_twice_keeps_last_row(tmp_path):
    (tmp_path / "results").mkdir()
    pl.DataFrame({
        "trial_key": ["a", "a", "b"],
        "state": ["ERROR", "COMPLETED", "ERROR"],
        "prior": ["standard"] * 3,
        "M": [1, 1, 1],
        "test_elbo_bound": [None, -90.0, None],
    }).write_parquet(tmp_path / "results" / "trials.parquet")
    t = load([tmp_path]).trials.sort("trial_key")
    assert t["trial_key"].to_list() == ["a", "b"]
    assert t["test_elbo_bound"].to_list() == [-90.0, None]
    assert t["state"].to_list() == ["COMPLETED", "ERROR"]
    assert t["study"].to_list() == [tmp_path.name] * 2


def test_spread_over_k_repeats_vae_in_every_k_panel():
    df = pl.LazyFrame({
        "dataset": ["d", "d", "d", "e"],
        "arch": ["mlp"] * 4,
        "K": [None, 100, 500, None],
        "model": ["VAE", "Mix1", "Mix1", "VAE"],
    })
    out = spread_over_k(df).collect().sort(["dataset", "model", "K"], nulls_last=True)
    vae = out.filter(pl.col("model") == "VAE")
    assert vae.filter(pl.col("dataset") == "d")["K"].sort().to_list() == [100, 500]
    # no K panel in dataset e: the VAE keeps its null K
    assert vae.filter(pl.col("dataset") == "e")["K"].to_list() == [None]


def test_unreadable_epochs_file_is_a_warning_not_an_error(alpha, tmp_path):
    import shutil

    study = tmp_path / "broken"
    shutil.copytree(alpha / "results", study / "results")
    (study / "results" / "epochs.parquet").write_bytes(b"PAR1 truncated")
    frames = load([study])
    assert frames.epochs.collect().is_empty()
    assert len(frames.warnings) == 1 and "epochs" in frames.warnings[0]
    assert frames.test_ll.collect().height > 0


def _copy(alpha, tmp_path):
    import shutil

    study = tmp_path / "copy"
    shutil.copytree(alpha / "results", study / "results")
    return study


def test_planned_trials_without_a_row_are_not_started(alpha, tmp_path):
    from study.spec import load_spec
    from study.store import write_plan

    study = _copy(alpha, tmp_path)
    spec = load_spec("quickstart")
    write_plan(str(study), spec.name, spec.plan())  # what `gmmpvae run` writes at start
    frames = load([study])
    planned = frames.trials.filter(pl.col("state") == "NOT STARTED")
    assert planned.height == len(spec.plan()) == 14
    assert set(planned["dataset"]) == {"digits"} and set(planned["study"]) == {"alpha"}
    assert set(planned["model"]) == {"VAE", "Mix1", "Mix2", "Mix3"}
    from analysis import status

    line = status.summary(status.prep(frames))
    assert "16 missing" in line and "NOT STARTED" in line and "and 11 more" in line


def test_unreadable_plan_is_a_warning(alpha, tmp_path):
    study = _copy(alpha, tmp_path)
    (study / "plan.parquet").write_bytes(b"PAR1 torn")
    frames = load([study])
    assert frames.trials.height == 21
    assert len(frames.warnings) == 1 and "plan.parquet" in frames.warnings[0]


def test_analysis_reads_the_file_names_study_writes():
    """analysis never imports study; the names of the files it reads must still agree."""
    from analysis import load as analysis_load
    from study import store

    assert analysis_load.PLAN_FILE == store.PLAN_FILE
    assert analysis_load.RESULTS_DIR == store.RESULTS_DIR


def test_analysis_does_not_import_study():
    import subprocess
    import sys

    code = ("import sys, analysis.load, analysis.registry, analysis.report; "
            "[__import__('analysis.' + m) for m in ('table1', 'figure2', 'figure3', 'figure4', "
            "'figure10', 'bound_gap', 'paper', 'reconstructions', 'status')]; "
            "bad = [m for m in sys.modules if m == 'study' or m.startswith('study.')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
