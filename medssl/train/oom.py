"""The trainer's message for a CUDA out-of-memory error: what failed and what to reduce."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def explain_oom(step: int, batch: dict, method: torch.nn.Module):
    """Turn ``torch.cuda.OutOfMemoryError`` inside the block into a RuntimeError naming the step (``step`` done so
    far), the per-GPU batch (``batch["image"]``: (B, C, *S)), the method's crop size and views, and what to reduce."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        shape, crop = tuple(batch["image"].shape), getattr(getattr(method, "views", None), "crop_size", None)
        raise RuntimeError(
            f"CUDA out of memory at step {step + 1} with a per-GPU batch of {shape[0]} scans of shape {shape[1:]}"
            f"{f' cropped to {tuple(crop)}' if crop else ''} (× {getattr(method, 'n_views', 1)} views). Reduce "
            "train.batch_size (raise train.grad_accum_steps), augment.crop_size or the encoder; or train.precision=bf16") from None
