"""Shared test fixtures: real data under ../shared/datasets when present, small CPU threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(
    os.environ.get("GMMPVAE_SHARED_DATASETS", REPO.parent / "shared" / "datasets")
)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data files of ../shared/datasets; tests that need them skip when absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(autouse=True)
def _torch_threads():
    """One torch thread per test process: on 2 shared cores, multi-threaded OpenMP stalls on
    the small tensors of tests (a PixelCNN sample: 15 s with 2 threads, 0.6 s with 1)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def test_device():
    """The device of device-parametrised tests: CUDA when present (the GPU suite,
    benchmarks/device_suite.sh), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
