"""The out-of-memory message (medssl/train/oom.py) without a trainer: found by mutating it."""

from __future__ import annotations

import pytest
import torch

from medssl.train.oom import explain_oom


def test_other_errors_pass_through_unchanged_and_a_method_without_views_counts_one():
    """Only torch.cuda.OutOfMemoryError is explained: any other RuntimeError (a shape mismatch) keeps its own
    message. A method without a view pipeline has no crop and counts × 1 view."""
    batch, method = {"image": torch.zeros(4, 2, 6, 6)}, torch.nn.Linear(1, 1)
    with pytest.raises(RuntimeError, match=r"^mat1 and mat2 shapes cannot be multiplied$"):
        with explain_oom(9, batch, method):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(RuntimeError) as caught:
        with explain_oom(9, batch, method):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    message = str(caught.value)
    assert not isinstance(caught.value, torch.cuda.OutOfMemoryError)
    assert message.startswith("CUDA out of memory at step 10 with a per-GPU batch of 4 scans of shape (2, 6, 6) "
                              "(× 1 views). Reduce train.batch_size")
    assert "cropped" not in message
