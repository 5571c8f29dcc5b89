"""Benchmark smoke tests run tiny networks: one torch thread is fastest and steadiest on a shared VM."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
