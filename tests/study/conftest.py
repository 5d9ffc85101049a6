"""What every study test shares, set once before they are collected: the helpers of this folder
(`fake_trials`, `drivers`, `flaky_storage`, `test_reliability`'s fake study, …) importable by the
tests (``sys.path``) and by Ray's workers (``PYTHONPATH``: they import `fake_trials`), and Ray on
127.0.0.1 only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
