"""`gmmpvae status`, a dry run and the repair code import no Ray: each runs in a fresh
interpreter (as the command does) on a study folder of records, an Optuna journal, a saved Ray
Tune experiment folder and running markers (one of the live driver, one of a lost one), and
reports which modules of Ray it loaded. Status reads the markers (`study.store.running`), never
Tune's saved state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs

HERE = Path(__file__).resolve().parent

from test_reliability import fake_study  # noqa: E402

from study import optuna_study, store  # noqa: E402
from study.store import lock  # noqa: E402

REPO = HERE.parents[1]
SCRIPT = r'''
import json, sys
import pyarrow.fs as pafs
from study.cli import main
from study.recovery import repair
from study.spec import load_study
from study import store

study, dry = sys.argv[1], sys.argv[2]
codes = [main(["status", study]), main(["status", study, "--no-consolidate"]),
         main(["run", "quickstart", "--dry-run", "--storage", dry])]
spec, _ = load_study(study)
lines = repair.problems(spec) + repair.repair_study(spec).lines
records = store.read_records(pafs.LocalFileSystem(), study)
missing = repair.reconcile_optuna(spec, records, lambda r: 1.0)
ray = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
print(json.dumps({"codes": codes, "lines": lines, "missing": missing, "ray": ray}))
'''


def saved_tune_experiment(study: Path) -> None:
    """What Ray Tune leaves in ``STUDY/tune/``: a tuner, an experiment state, trial folders."""
    tune = study / store.TUNE_DIR
    (tune / "train_trial_00000_0_2026-12-02_10-00-00").mkdir(parents=True)
    (tune / "tuner.pkl").write_bytes(b"\x80\x04not a real pickle.")
    (tune / "experiment_state-2026-12-02_10-00-00.json").write_text(json.dumps(
        {"trial_data": [], "runner_data": {}}))
    (tune / "basic-variant-state-2026-12-02_10-00-00.json").write_text("{}")


def test_status_dry_run_and_repair_import_no_ray(tmp_path):
    study, spec, keys = fake_study(tmp_path)
    live, lost = keys[:2]
    fs = pafs.LocalFileSystem()
    for key in (live, lost):  # running: no record yet
        (study / "trials" / key / store.RECORD_FILE).unlink()
    saved_tune_experiment(study)
    ostudy = optuna_study.open_study(spec)  # a journal for status and the repair to read
    for key in keys:
        trial = ostudy.ask()
        trial.set_user_attr("trial_key", key)
        if key not in (live, lost):
            ostudy.tell(trial, 1.0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with lock.study_lock(fs, str(study), str(study)):  # the live driver
        now = datetime.now(UTC)
        for key, seen in ((live, now), (lost, now - timedelta(hours=1))):
            marker = store.running.start(fs, str(study / "trials" / key), trial_key=key,
                                         node="n/1", attempt=1, first_started_at=None)
            marker.content["seen_at"] = seen.isoformat()
            store.write_json(fs, str(study / "trials" / key / store.RUNNING_FILE),
                             marker.content)
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(study), str(tmp_path / "dry")],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 0, 0]
    assert result["lines"] == [] and result["missing"] == {}
    assert result["ray"] == []
    assert f"optuna     {len(keys) - 2} COMPLETE, 2 RUNNING" in out.stdout
    assert (f"trials     {spec.search.num_samples} planned: {len(keys) - 2} COMPLETED, "
            "1 RUNNING, 1 UNFINISHED") in out.stdout
    assert f"  {live:<44} RUNNING" in out.stdout and f"  {lost:<44} UNFINISHED" in out.stdout
