"""``gmmpvae report`` on an open search: the open-search part is there, in headless Chromium
too; claims with no data and outputs that do not apply are each said once."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import polars as pl
import pytest

from analysis import importances, report
from analysis.claims_stats import NO_DATA, SUPPORTED
from study.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from open_study import write_open_study  # noqa: E402

OPEN_FIGURES = ("importances", "search_history", "search_parallel", "search_slice",
                "search_contour", "pi_ablation")


@pytest.fixture(scope="module")
def open_report(tmp_path_factory):
    """The report of a 24-trial open search, through the command line (rendered once)."""
    root = write_open_study(tmp_path_factory.mktemp("open") / "open_search_digits", 24)
    out = root / "report"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importances, "N_BOOT", 4)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["report", str(root)])
    return code, stdout.getvalue(), stderr.getvalue(), out


def test_open_search_report_has_its_part(open_report):
    code, _, stderr, out = open_report
    assert code == 0 and "failed" not in stderr, stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    for name in OPEN_FIGURES:
        assert f'src="figures/{name}.png"' in html and f"(figures/{name}.png)" in md
    for name in ("importances", "search_top", "pi_ablation"):
        assert (out / "tables" / f"{name}.csv").is_file()
    assert "Optuna 5." in html and "PED-ANOVA" in html and "fANOVA" in html
    # 24 trials ≥ MIN_TRIALS: each evaluator's sentence ranks or says the intervals overlap
    assert "too few to rank" not in html
    assert "description, not a verdict" in html  # π: one run per configuration
    # the figures and the table come from the same trials: the top table's best is the
    # history note's best
    top = pl.read_csv(out / "tables" / "search_top.csv")
    assert f"best by val_elbo_mc: {top['trial_key'][0]}" in html


def test_open_search_report_says_what_does_not_apply_once(open_report):
    _, _, _, out = open_report
    html = (out / "index.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert html.count("<h2>Not applicable to this study</h2>") == 1
    assert md.count("## Not applicable to this study") == 1
    # figure 4 does not apply (every π is its own): listed, no section of its own
    assert 'id="figure4"' not in html
    listed = html.split("<h2>Not applicable to this study</h2>")[1].split("</section>")[0]
    assert "Figure 4" in listed
    # the claims with no data: one line, not a row each
    assert html.count("the study has no trials for their comparisons") == 1
    claims = (out / "tables" / "claims.csv")
    if claims.is_file():
        assert NO_DATA not in set(pl.read_csv(claims)["verdict"])


def test_collapse_no_data_keeps_the_verdicts_and_names_the_rest():
    df = pl.DataFrame({"claim": ["a", "b", "c", "d"],
                       "verdict": [NO_DATA, SUPPORTED, NO_DATA, SUPPORTED]})
    kept, line = report.collapse_no_data(df)
    assert kept["claim"].to_list() == ["b", "d"]
    assert line == "No data for claims (a), (c): the study has no trials for their comparisons"
    other = pl.DataFrame({"x": [1]})
    assert report.collapse_no_data(other) == (other, None)


def test_open_search_report_in_headless_chromium(open_report, browser, tmp_path):
    """Chromium opens index.html and loads every figure of the open-search part (a natural
    width above 0); a screenshot of the page is not blank."""
    _, _, _, out = open_report
    images = dict(browser.images(out / "index.html", tmp_path))
    for name in OPEN_FIGURES:
        assert images.get(f"figures/{name}.png", 0) > 0, name
    dom = browser.dom((out / "index.html").as_uri())
    for section in ("importances", "search_history", "search_region", "search_top",
                    "pi_ablation"):
        assert f'id="{section}"' in dom
    shot = browser.screenshot((out / "index.html").as_uri(), tmp_path / "open.png")
    assert browser.colours(shot) > 50
