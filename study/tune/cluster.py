"""The driver's calls into Ray: start an embedded Ray or join a cluster, count the trial slots
of its live nodes, read a saved Tune experiment, shut down.

Imports Ray at the top: reached only through `study.tune.session`, inside the environment it
sets up (see `study.tune`, the one lazy import). A join is probed first (a TCP connection within
``study.connect_timeout``, `study.tune.session.probe_address`), and a failed one is one line
naming the cause (`study.tune.session.join_error`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import ray
from ray.tune import ExperimentAnalysis

from search_spaces import KEY_FIELD
from study.console import warn
from study.errors import UsageError
from study.spec import StudySpec
from study.spec.checks import local_capacity, node_slots
from study.tune.session import join_error, probe_address

LOOPBACK = "127.0.0.1"


def runtime_env() -> dict[str, Any]:
    """Our packages travel with the job: a cluster node needs only the dependencies."""
    modules = []
    for name in ("models", "study", "search_spaces", "analysis"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    return {"py_modules": modules, "env_vars": {"PYTHONUNBUFFERED": "1"}}


def start(spec: StudySpec, verbose: bool) -> bool:
    """Start or join Ray; whether it was started here (and is to be shut down here)."""
    if ray.is_initialized():
        return False
    address = spec.study.address
    logging_level = "INFO" if verbose else "WARNING"
    if address is None:
        cpus, gpus = local_capacity(spec.resources.gpus_per_trial > 0)
        ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False,
                 log_to_driver=verbose, logging_level=logging_level)
        node_ip = ray.util.get_node_ip_address()
        if node_ip != LOOPBACK:  # Ray was imported by this process before we could set it up
            warn(f"the embedded Ray listens on {node_ip}, not {LOOPBACK} (Ray was imported "
                 "before the study started)")
        return True
    probe_address(address, spec.study.connect_timeout)
    with _stderr_captured(echo=verbose) as captured:
        try:
            ray.init(address=address, runtime_env=runtime_env(), log_to_driver=verbose,
                     logging_level=logging_level)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError, …
            failure: BaseException | None = exc
        else:
            failure = None
    if failure is not None:
        raise UsageError(join_error(address, failure, captured.read())) from None
    return True


class _Captured:
    def __init__(self) -> None:
        self.text = ""

    def read(self) -> str:
        return self.text


@contextlib.contextmanager
def _stderr_captured(echo: bool) -> Iterator[_Captured]:
    """While joining a cluster, what Ray's C++ client writes to the process's stderr (one
    "InvalidAuthToken" line a second while a token-protected cluster refuses us) goes to a
    temporary file, read afterwards to name the cause; echoed with ``verbose``. File
    descriptor 2 is put back when the block ends."""
    captured = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.text = tmp.read().decode("utf-8", "replace")
            if echo and captured.text:
                sys.stderr.write(captured.text)


def largest_memory() -> int | None:
    """The largest live node's memory as Ray counts it (None when no node reports one)."""
    sizes = [int(n["Resources"].get("memory", 0)) for n in ray.nodes() if n.get("Alive")]
    return max(sizes, default=0) or None


def slots(spec: StudySpec) -> tuple[int, list[tuple[float, float]]]:
    nodes = [(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
             for n in ray.nodes() if n.get("Alive")]
    return node_slots(nodes, spec.resources.cpus_per_trial, spec.resources.gpus_per_trial), nodes


def shutdown() -> None:
    """Shut down the Ray this process started."""
    ray.shutdown()


def experiment_states(path: str) -> dict[str, str]:
    """trial_key → Tune's status from the saved experiment at ``path`` ({} when it has no
    state file yet). Needs no running Ray."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            analysis = ExperimentAnalysis(path)
        except Exception:  # no experiment state file yet
            return {}
    return {t.config.get(KEY_FIELD, t.trial_id): t.status for t in analysis.trials}
