"""``gmmpvae resume`` (study.cli.resume): its flags, and what it refuses in one line before Ray
starts (the resumes themselves run in tests/study/test_runner.py and test_fault_tolerance.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

from test_reliability import fake_study  # noqa: E402

from study import cli  # noqa: E402
from study.cli import resume as resume_cmd  # noqa: E402


def test_the_flags_and_their_defaults():
    parser = argparse.ArgumentParser()
    resume_cmd.add_arguments(parser)
    args = parser.parse_args(["s3://b/study"])
    assert (args.study_dir, args.rerun_errored, args.address, args.verbose) == (
        "s3://b/study", False, None, False)
    args = parser.parse_args(["x", "--rerun-errored", "--address", "local", "--verbose"])
    assert (args.rerun_errored, args.address, args.verbose) == (True, "local", True)


def test_a_folder_without_a_study_is_one_line(tmp_path, capsys):
    assert cli.main(["resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gmmpvae resume: error: {tmp_path} is not a study folder (no study.json)"


def test_a_study_moved_elsewhere_is_refused(tmp_path, capsys):
    study, _, _ = fake_study(tmp_path)
    moved = tmp_path / "moved"
    study.rename(moved)
    assert cli.main(["resume", str(moved)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"gmmpvae resume: error: {moved} was created as {study}: a study is resumed "
                   "where it was created")
