"""benchmarks/device_suite.sh: its shell syntax, and the assembly of its parts into one JSON."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _suite_json():
    spec = importlib.util.spec_from_file_location("suite_json", BENCHMARKS / "suite_json.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_device_suite_is_valid_bash():
    subprocess.run(["bash", "-n", str(BENCHMARKS / "device_suite.sh")], check=True)


def _write_part(folder: Path, name: str, rc: int, out: str, err: str = "",
                times: str = "100.0 112.5") -> None:
    (folder / f"{name}.rc").write_text(f"{rc}\n")
    (folder / f"{name}.out").write_text(out)
    (folder / f"{name}.err").write_text(err)
    (folder / f"{name}.time").write_text(times)


def test_parts_become_one_json_document_whatever_happened_to_them(tmp_path):
    _write_part(tmp_path, "step", 0, json.dumps({"results": [{"speedup": 2.1}]}))
    _write_part(tmp_path, "tests", 1, "F.\n1 failed, 1 passed in 3.0s\n", "boom")
    _write_part(tmp_path, "is", 124, "", "killed", times="0 45")
    _write_part(tmp_path, "packing", 0, '{"truncated": ')  # cut off mid-document
    out = subprocess.run([sys.executable, str(BENCHMARKS / "suite_json.py"), str(tmp_path),
                          "cuda", "tests", "step", "is", "packing", "step_compile"],
                         check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    parts = doc["parts"]
    assert parts["step"] == {"rc": 0, "status": "ok", "seconds": 12.5,
                             "result": {"results": [{"speedup": 2.1}]}, "stderr_tail": []}
    assert parts["tests"]["status"] == "failed"
    assert parts["tests"]["output_tail"][-1] == "1 failed, 1 passed in 3.0s"
    assert parts["is"]["status"] == "timed_out" and parts["is"]["stderr_tail"] == ["killed"]
    assert parts["packing"]["result"] is None and parts["packing"]["output_tail"]
    assert parts["step_compile"] == {"status": "missing", "rc": None}
    assert doc["mode"] == "cuda" and doc["all_ok"] is False
    assert doc["total_seconds"] == 12.5 + 12.5 + 45 + 12.5
    assert "torch" in doc["machine"]


def test_suite_json_usage_error_is_one_line_and_status_2():
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "suite_json.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert _suite_json().part(Path("/nonexistent"), "x")["status"] == "missing"
