"""``gmmpvae report`` end to end on the fixtures: files, notes, partial and bad inputs."""

from __future__ import annotations

import contextlib
import io

import polars as pl
import pytest

from analysis import registry
from study.cli import main

FIGURES = ("figure2", "figure3", "figure4", "figure10", "reconstructions", "bound_gap")
TABLES = ("status", "status_trials", "table1", "paper", "bound_gap", "bound_gap_ranking",
          "claims", "claims_summary")


@pytest.fixture(scope="session")
def full_report(alpha, tmp_path_factory):
    """The whole report of study alpha, through the command line (rendered once)."""
    out = tmp_path_factory.mktemp("report")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["report", str(alpha), "--out", str(out)])
    return code, stdout.getvalue(), stderr.getvalue(), out


def test_full_report_writes_every_output(full_report):
    code, stdout, stderr, out = full_report
    assert code == 0, stderr
    assert stderr == ""
    for name in FIGURES:
        for suffix in (".png", ".svg"):
            path = out / "figures" / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 0, path
    for name in TABLES:
        for suffix in (".csv", ".md", ".html"):
            path = out / "tables" / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 0, path
    assert len(list((out / "reconstructions").glob("*.png"))) == 16
    html = (out / "index.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    for output in registry.outputs():
        assert output.title in html and output.title in md
    for name in FIGURES:
        assert f'src="figures/{name}.png"' in html and f"(figures/{name}.png)" in md


def test_partial_study_says_which_trials_failed_or_are_missing(full_report):
    code, stdout, _, out = full_report
    assert "Partial results: 18 of 21 trials completed" in stdout
    assert "1 failed (t017 ERROR)" in stdout and "2 missing (t018 RUNNING, t020 PENDING)" in stdout
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "Partial results" in html
    assert "NonFiniteLossError: loss is nan at epoch 3, batch 7" in html
    assert "t018" in html and "t020" in html  # the RUNNING and PENDING trials are named
    # the CSV holds the raw numbers (no ± text) with the seeds list flattened
    table = pl.read_csv(out / "tables" / "table1.csv")
    assert table.height == 9 and table["seeds"][0] == "0, 1, 2"


def _run(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def test_missing_folder_exits_2_with_one_line(tmp_path):
    code, stdout, stderr = _run(["report", str(tmp_path / "nope")])
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and "does not exist" in stderr


def test_empty_folder_exits_2_with_one_line(tmp_path):
    code, _, stderr = _run(["report", str(tmp_path)])
    assert code == 2 and stderr.count("\n") == 1 and "no results in" in stderr
    assert not (tmp_path / "report").exists()


def test_unknown_output_name_exits_2(alpha, tmp_path):
    code, _, stderr = _run(["report", str(alpha), "--out", str(tmp_path), "--only", "figure99"])
    assert code == 2 and "figure99" in stderr


def test_compare_merges_studies_with_labels(alpha, beta, tmp_path):
    code, stdout, stderr = _run(["report", str(alpha), "--compare", str(beta), "--out",
                                 str(tmp_path), "--only", "status", "table1"])
    assert code == 0, stderr
    assert "22 of 25 trials completed" in stdout
    table = pl.read_csv(tmp_path / "tables" / "table1.csv")
    assert set(table["study"]) == {"alpha", "beta_laptop"}
    md = (tmp_path / "tables" / "table1.md").read_text(encoding="utf-8")
    assert md.startswith("| study |") and "beta_laptop" in md


def test_study_missing_columns_and_files_still_reports(tmp_path):
    """An old study: no IS LL, no MC ELBO, no state column, no epochs or test_ll files."""
    study = tmp_path / "old"
    (study / "results").mkdir(parents=True)
    pl.DataFrame({
        "study": ["old"] * 4,
        "trial_key": ["a", "b", "c", "d"],
        "state": ["COMPLETED"] * 4,
        "dataset": ["digits"] * 4,
        "arch": ["mlp"] * 4,
        "prior": ["standard", "standard", "pseudo_mixture", "pseudo_mixture"],
        "M": [1, 1, 2, 2],
        "K": [50, 50, 50, 50],
        "seed": [0, 1, 0, 1],
        "test_elbo_bound": [-30.0, -31.0, -28.0, -28.5],
        "test_re": [20.0, 20.5, 19.0, 19.2],
        "test_kl": [10.0, 10.5, 9.0, 9.3],
    }).write_parquet(study / "results" / "trials.parquet")
    code, stdout, stderr = _run(["report", str(study)])
    assert code == 0, stderr
    assert "All 4 trials completed." in stdout
    # absent data is a note, not an exception
    for name in ("paper", "bound_gap", "figure2", "figure4", "figure10", "reconstructions"):
        assert f"{name}: Skipped:" in stdout
    out = study / "report"
    table = pl.read_csv(out / "tables" / "table1.csv")
    assert table["test_elbo_bound_mean"].to_list() == pytest.approx([-30.5, -28.25])
    assert table["test_ll_mean"].null_count() == 2
    assert (out / "figures" / "figure3.png").stat().st_size > 0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Skipped: no per-image test log-likelihoods" in md


def test_report_opens_in_a_real_browser_with_every_image(full_report, browser, tmp_path):
    """Headless Chromium opens index.html: every <img> of the report loads (a natural width
    above 0), and a screenshot of the page is not blank."""
    code, _, _, out = full_report
    assert code == 0
    images = browser.images(out / "index.html", tmp_path)
    html = (out / "index.html").read_text(encoding="utf-8")
    assert len(images) == html.count("<img ") >= len(FIGURES)
    assert [src for src, width in images if width <= 0] == []
    shot = browser.screenshot((out / "index.html").as_uri(), tmp_path / "report.png")
    colours = browser.colours(shot)
    print(f"report screenshot: {colours} distinct colours")
    assert colours > 50
