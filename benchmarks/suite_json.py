"""Assemble the parts of ``benchmarks/device_suite.sh`` into one JSON document (stdout).

``python benchmarks/suite_json.py PARTS_DIR MODE NAME...``: for each NAME, PARTS_DIR holds
``NAME.out`` (the part's stdout), ``NAME.err``, ``NAME.rc`` (exit status; 124/137 = its time
limit) and ``NAME.time`` (start and end, epoch seconds). A part's entry: ``rc``, ``status``
(ok, failed, timed_out, missing), ``seconds``, ``result`` (its stdout parsed as JSON when it is
one, else null), ``output_tail`` (the last lines of stdout when it is not JSON: pytest's
summary) and ``stderr_tail``. Plus the machine (GPU name via torch, ``nvidia-smi`` when there)
and the total seconds. Never fails on a broken part: that part says what went wrong.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

TAIL_LINES = 15


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def part(folder: Path, name: str) -> dict[str, Any]:
    """The entry of one part (see the module doc)."""
    rc_text = _read(folder / f"{name}.rc")
    if rc_text is None:
        return {"status": "missing", "rc": None}
    rc = int(rc_text.strip() or -1)
    out = _read(folder / f"{name}.out") or ""
    err = _read(folder / f"{name}.err") or ""
    entry: dict[str, Any] = {
        "rc": rc,
        "status": "ok" if rc == 0 else "timed_out" if rc in (124, 137) else "failed",
    }
    times = (_read(folder / f"{name}.time") or "").split()
    if len(times) == 2:
        entry["seconds"] = round(float(times[1]) - float(times[0]), 1)
    try:
        entry["result"] = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        entry["result"] = None
        entry["output_tail"] = out.strip().splitlines()[-TAIL_LINES:]
    entry["stderr_tail"] = err.strip().splitlines()[-TAIL_LINES:]
    return entry


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
    except Exception as exc:  # the document is written even without a working torch
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        info["nvidia_smi"] = smi.stdout.strip().splitlines() if smi.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = None
    return info


def assemble(folder: Path, mode: str, names: list[str]) -> dict[str, Any]:
    parts = {name: part(folder, name) for name in names}
    return {
        "suite": "device_suite", "mode": mode, "machine": machine(),
        "total_seconds": round(sum(p.get("seconds", 0.0) for p in parts.values()), 1),
        "all_ok": all(p["status"] == "ok" for p in parts.values()),
        "parts": parts,
    }


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: suite_json.py PARTS_DIR MODE NAME...", file=sys.stderr)
        return 2
    print(json.dumps(assemble(Path(argv[0]), argv[1], argv[2:]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
