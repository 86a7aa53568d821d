"""Fixtures of the adapter tests: torch on one thread (the tiny models are far faster that way on
a shared CPU; the real model's module sets its own count)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
