"""`gmmpvae status`, a dry run and the repair code import no Ray: each runs in a fresh
interpreter (as the command does) on a study folder of records and an Optuna journal, and
reports which modules of Ray it loaded. (A study with a saved Tune experiment is read with
Ray Tune's public ExperimentAnalysis, which imports Ray: not the case here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from test_reliability import fake_study  # noqa: E402

from study import optuna_study  # noqa: E402

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


def test_status_dry_run_and_repair_import_no_ray(tmp_path):
    study, spec, keys = fake_study(tmp_path)
    ostudy = optuna_study.open_study(spec)  # a journal for status and the repair to read
    for key in keys:
        trial = ostudy.ask()
        trial.set_user_attr("trial_key", key)
        ostudy.tell(trial, 1.0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(study), str(tmp_path / "dry")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 0, 0]
    assert result["lines"] == [] and result["missing"] == {}
    assert result["ray"] == []
    assert f"optuna     {len(keys)} COMPLETE" in out.stdout
