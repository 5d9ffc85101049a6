"""The route a newcomer follows from ``gmmpvae run`` (and ``gmmpvae resume``) to the first trial,
counted the way issue 15 counts it: stops and returns to files already visited.

Each command runs in a fresh process under a profiler (``sys.setprofile``) that notes the
first call of every distinct function defined under ``study/`` — in call order, leaving out
calls made while a module is being imported and comprehensions/lambdas — and stops noting when
Ray Tune's ``Tuner.fit`` is called (the trials start there). A **stop** is a run of calls in one
file (the reader opens that file); a **return** is a stop at a file already visited. The
commands are a tiny quickstart grid (1 epoch, 200 images, so the whole benchmark takes about a
minute or two) and its resume after one trial record is lost (the repair re-runs it).

Prints one JSON object: for ``run`` and ``resume``, the counts and the route itself (each stop
with the functions called there). Usage: ``.venv/bin/python benchmarks/route.py [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STUDY_PKG = str(REPO / "study") + os.sep
SKIPPED = {"<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>", "<lambda>", "<module>"}
TINY = ["--max-epochs", "1", "--seeds", "1", "--max-train-examples", "200",
        "--max-test-examples", "100", "--is-samples", "5"]


def trace(argv: list[str], out: str) -> int:
    """Run ``gmmpvae argv`` in this process, writing the noted calls to ``out`` (JSON)."""
    sys.path.insert(0, str(REPO))
    from study.cli import main

    seen: set[tuple[str, str]] = set()
    calls: list[list[str]] = []
    done = False

    def importing(frame: Any) -> bool:
        while frame is not None:
            code = frame.f_code
            if (code.co_name == "<module>" and code.co_filename != __file__) \
                    or "importlib._bootstrap" in code.co_filename \
                    or "<frozen importlib" in code.co_filename:
                return True
            frame = frame.f_back
        return False

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal done
        if done or event != "call":
            return
        code = frame.f_code
        if code.co_name == "fit" and code.co_filename.endswith(os.path.join("tune", "tuner.py")) \
                and "ray" in code.co_filename:
            done = True
            sys.setprofile(None)
            return
        if not code.co_filename.startswith(STUDY_PKG) or code.co_name in SKIPPED:
            return
        key = (code.co_filename, code.co_qualname)
        if key in seen or importing(frame.f_back):
            return
        seen.add(key)
        calls.append([os.path.relpath(code.co_filename, REPO), code.co_qualname])

    sys.setprofile(profile)
    try:
        rc = main(argv)
    finally:
        sys.setprofile(None)
        Path(out).write_text(json.dumps({"calls": calls, "reached_fit": done}))
    return rc


def count(calls: list[list[str]]) -> dict[str, Any]:
    """Stops, files and returns of a list of (file, function) calls."""
    stops: list[tuple[str, list[str]]] = []
    for file, function in calls:
        if stops and stops[-1][0] == file:
            stops[-1][1].append(function)
        else:
            stops.append((file, [function]))
    visited: set[str] = set()
    returns = 0
    for file, _ in stops:
        returns += file in visited
        visited.add(file)
    return {"stops": len(stops), "files": len(visited), "returns": returns,
            "functions": len(calls), "route": [f"{f}: {', '.join(fs)}" for f, fs in stops]}


def traced(argv: list[str], work: Path, name: str) -> dict[str, Any]:
    out = work / f"{name}.json"
    proc = subprocess.run([sys.executable, __file__, "--trace", str(out), "--", *argv],
                          cwd=work, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"route: gmmpvae {' '.join(argv)} failed (rc {proc.returncode}): "
                         f"{proc.stderr.strip()[-400:]}")
    data = json.loads(out.read_text())
    if not data["reached_fit"]:
        raise SystemExit(f"route: gmmpvae {' '.join(argv)} never reached Tuner.fit")
    return count(data["calls"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default=None, help="keep the study here (default: temporary)")
    parser.add_argument("--trace", default=None, help=argparse.SUPPRESS)
    parser.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trace:
        raise SystemExit(trace(args.argv, args.trace))
    work = Path(args.keep or tempfile.mkdtemp(prefix="route-"))
    work.mkdir(parents=True, exist_ok=True)
    study = work / "study"
    try:
        run = traced(["run", "quickstart", "--storage", str(study), "--quiet", *TINY],
                     work, "run")
        lost = sorted((study / "trials").iterdir())[0] / "trial.json"
        lost.unlink()  # a lost record: resume's repair runs the trial again
        resume = traced(["resume", str(study), "--quiet"], work, "resume")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"run": run, "resume": resume}, indent=1))


if __name__ == "__main__":
    main()
