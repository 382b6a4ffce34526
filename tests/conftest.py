"""Shared pytest setup."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Run torch single-threaded: the tests use tiny tensors, and on a busy 2-core machine the
    OpenMP workers spinning at every barrier made them about 5x slower (40 s instead of 8 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
