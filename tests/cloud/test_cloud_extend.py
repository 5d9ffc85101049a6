"""``gmmpvae extend`` of a study on a SeaweedFS S3 bucket whose Optuna study is in PostgreSQL
(docs/BUDGETS.md): run at 2 epochs, extend to 4 — each continued trial downloads its source's
last checkpoint from the bucket —, every (configuration, budget) once in Parquet and once
COMPLETE in PostgreSQL (the study's Optuna study and the step's), ``status`` reads both
budgets. Fake trials (seconds); marked ``integration``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fake_study
from test_cloud_study import REPO, cli, finish, store, table

pytestmark = pytest.mark.integration


def test_a_study_on_s3_and_postgres_is_extended(s3_env, s3_study, pg_url, tmp_path):
    import optuna

    path, env = fake_study(s3_env, tmp_path, "grown", s3_study, pg_url, epoch_seconds=0.05,
                           budget={"max_epochs": 2, "patience": 5})
    scratch = Path(s3_env["GMMPVAE_SCRATCH"])
    run = cli(["run", str(path), "--quiet"], env)
    out = finish(run)
    assert run.returncode == 0, out
    shutil.rmtree(scratch / "gmmpvae-trials", ignore_errors=True)  # extended on another machine

    extend = cli(["extend", s3_study, "--max-epochs", "4", "--quiet"], env)
    out = finish(extend)
    assert extend.returncode == 0, out
    assert "7 continue from their last checkpoint" in out and "14 COMPLETE" in out, out

    trials = table(s3_study, "trials.parquet")
    keys = sorted(r["trial_key"] for r in trials)
    assert len(keys) == len(set(keys)) == 14
    assert sorted(r["max_epochs"] for r in trials) == [2] * 7 + [4] * 7
    by_key = {r["trial_key"]: r for r in trials}
    for r in trials:
        if r["max_epochs"] == 4:
            assert by_key[r["continued_from"]]["config_key"] == r["config_key"]
    epochs = table(s3_study, "epochs.parquet")
    for r in trials:
        assert [e["epoch"] for e in epochs if e["trial_key"] == r["trial_key"]] == \
            list(range(1, r["max_epochs"] + 1))
    fs, root = store(s3_study)
    for r in trials:  # continued: only epochs 3-4 were trained (the fake trainer's log)
        if r["max_epochs"] == 4:
            with fs.open_input_stream(f"{root}/trials/{r['trial_key']}/executed.log") as f:
                assert [int(line.split()[0]) for line in f.read().decode().splitlines()] \
                    == [3, 4]
    names = sorted(n for n in optuna.get_all_study_names(pg_url))
    assert names == ["grown", "grown+max_epochs=4+seeds=1"]
    complete = sorted(t.user_attrs["trial_key"] for n in names
                      for t in optuna.load_study(study_name=n, storage=pg_url).get_trials()
                      if t.state.name == "COMPLETE")
    assert complete == keys
    assert fs.get_file_info(f"{root}/extend.json").type.name == "NotFound"

    status = subprocess.run([sys.executable, "-m", "study.cli", "status", s3_study], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "14 planned: 14 COMPLETED" in status.stdout, status.stdout
    assert "2 epochs: 7 trials; 4 epochs: 7 trials (7 continued)" in status.stdout
