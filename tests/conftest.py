"""Shared fixtures: small generated samples, made once per test session."""

from __future__ import annotations

import pytest
import torch

from hep_event_models.generator import generate

SAMPLE_EVENTS = {"hzz4l": 20_000, "zz4l": 20_000, "dy": 20_000, "ttbar": 10_000}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> dict[str, str]:
    """One HDF5 file per process, generated with fixed seeds."""
    d = tmp_path_factory.mktemp("samples")
    out = {}
    for i, (proc, n) in enumerate(SAMPLE_EVENTS.items()):
        path = d / f"{proc}.h5"
        generate(proc, n, path, seed=100 + i, chunk_size=10_000, progress=False, workers=1)
        out[proc] = str(path)
    return out


@pytest.fixture()
def small_file(tmp_path) -> str:
    """A fresh 2,000-event dy file a test may modify."""
    path = tmp_path / "small.h5"
    generate("dy", 2_000, path, seed=7, chunk_size=1_000, progress=False, workers=1)
    return str(path)
