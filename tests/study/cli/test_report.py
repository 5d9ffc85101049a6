"""``gmmpvae report`` (study.cli.report): the study is consolidated first, bad input is one
line — on a study folder of records (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parents[1]

from test_reliability import fake_study  # noqa: E402

from study import cli  # noqa: E402
from study.cli import report as report_cmd  # noqa: E402


def test_a_running_study_is_consolidated_before_it_is_reported(tmp_path):
    study, _, keys = fake_study(tmp_path)
    report_cmd._consolidate(study)
    table = pq.read_table(study / "results" / "trials.parquet")
    assert sorted(table.column("trial_key").to_pylist()) == sorted(keys)


def test_a_folder_without_trials_is_left_as_it_is(tmp_path):
    report_cmd._consolidate(tmp_path)
    assert not (tmp_path / "results").exists()


def test_an_unknown_output_is_one_line_before_any_work(tmp_path, capsys):
    study, _, _ = fake_study(tmp_path)
    assert cli.main(["report", str(study), "--only", "no_such_output"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gmmpvae report: error: ") and "\n" not in err
    assert "no_such_output" in err
    assert not (study / "results").exists() and not (study / "report").exists()


def test_a_missing_study_is_one_line(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gmmpvae report: error: ") and "\n" not in err
