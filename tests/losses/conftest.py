"""Loss-test setup: helper modules importable, one intra-op thread for tiny tensors."""

import sys
from pathlib import Path

import pytest
import torch

# With --import-mode=importlib the test folder is not on sys.path; the loss tests import
# their naive reference loops (losses_naive.py) and the DDP worker (losses_ddp_worker.py).
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors: one thread is faster and immune to CPU contention from other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
