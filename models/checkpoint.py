"""Atomic file writes and resumable training checkpoints.

Every file of a trial folder is written to a temporary file in the same folder and then moved
over its final name with ``os.replace`` (atomic on POSIX and Windows), so a crash leaves either
the old file or the new one, never half of one. Checkpoints are ``torch.save`` dicts of tensors
and plain Python values only, so they load with ``torch.load(..., weights_only=True)`` (no
arbitrary code runs when a checkpoint from elsewhere is opened). Random-number states are stored
in that form too: torch's as byte tensors, numpy's Mersenne-Twister keys as an int64 tensor,
Python's as a list of ints.
"""

from __future__ import annotations

import io
import json
import os
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"


# ----------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path next to ``path``, then move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh unique name (not mkstemp, whose files are private 0600): the file gets the
    # usual permissions of the umask, so other nodes and users can read the trial folder.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` into memory (so one serialisation can be written to several folders)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, torch_bytes(obj))


def load_torch(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written here: tensors and plain values only (``weights_only=True``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


# ----------------------------------------------------------------------------------------------
# Random-number states (every source a trial uses)


def capture_rng(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Snapshot of torch (CPU, and CUDA when used), numpy, Python ``random`` and ``generator``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": list(py_state), "gauss_next": gauss_next},
        "generator": generator.get_state(),
        "generator_device": generator.device.type,
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    """Inverse of `capture_rng`. A CUDA state is restored only when running on CUDA again."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    if state.get("generator_device") == generator.device.type:
        generator.set_state(state["generator"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy and Python ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
