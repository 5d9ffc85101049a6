"""End to end: the `quickstart` study (tiny budget) through Ray Tune, then `gmmpvae report`."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from study import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quickstart_study(tmp_path_factory):
    storage = tmp_path_factory.mktemp("e2e") / "quickstart"
    code = cli.main([
        "run", "quickstart", "--storage", str(storage), "--max-epochs", "3",
        "--warmup-epochs", "1", "--patience", "2", "--is-samples", "20",
        "--max-train-examples", "300", "--max-test-examples", "40",
    ])
    assert code == 0
    return storage


def test_quickstart_then_report_writes_index_and_every_figure_with_data(quickstart_study, capsys):
    out = quickstart_study / "report"
    assert cli.main(["report", str(quickstart_study), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "All 14 trials completed." in printed
    index = (out / "index.html").read_text()
    assert (out / "report.md").stat().st_size > 0
    # Digits has no paper rows and the quickstart grid varies no π: those two are skipped
    # with a note; every other output has data and is drawn as PNG and SVG.
    assert "paper: Skipped" in printed and "figure4: Skipped" in printed
    for figure in ("figure2", "figure3", "figure10", "reconstructions", "bound_gap"):
        for suffix in ("png", "svg"):
            path = out / "figures" / f"{figure}.{suffix}"
            assert path.stat().st_size > 0, path
        assert f"figures/{figure}.png" in index
    table = pl.read_csv(out / "tables" / "table1.csv")
    assert table.height == 7  # VAE + Mix1..3 x K in {10, 50}
    assert set(table["n_seeds"].to_list()) == {2} and set(table["seeds"].to_list()) == {"0, 1"}


def test_report_consolidates_a_study_whose_driver_died_before_consolidating(
    quickstart_study, tmp_path, capsys
):
    crashed = tmp_path / "crashed"
    shutil.copytree(quickstart_study, crashed, ignore=shutil.ignore_patterns("report", "tune"))
    shutil.rmtree(crashed / "results")
    victim = sorted((crashed / "trials").iterdir())[0]
    (victim / "trial.json").unlink()  # that trial was still running when the driver died
    assert cli.main(["report", str(crashed), "--out", str(tmp_path / "r"), "--only", "table1"]) == 0
    printed = capsys.readouterr().out
    assert "13 of 14" in printed and victim.name in printed
    trials = pl.read_parquet(crashed / "results" / "trials.parquet")
    assert trials.height == 13 and victim.name not in trials["trial_key"].to_list()
