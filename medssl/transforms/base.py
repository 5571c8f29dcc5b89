"""Shared machinery of the batch augmentations.

Every random batch transform is a pair: ``sample_params(shape, generator, device)`` draws
independent parameters for each sample of a ``(B, C, *spatial)`` batch from an explicit
:class:`torch.Generator`, and ``apply(x, params)`` is the deterministic twin that applies
given parameters. ``transform(x, generator)`` does both. Parameters are a ``dict`` of
tensors whose first dimension is the batch; the boolean entry ``"apply"`` (B,) says which
samples the transform touches (drawn with the transform's probability ``prob``). Samples
that are not selected are returned bit-for-bit unchanged.

Transforms whose output needs a large random field (noise, shuffles) store a 64-bit
``"seed"`` in their parameters instead of the field, so ``apply`` stays deterministic and
the parameters stay small.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

Params = dict[str, torch.Tensor]


def check_batch(x: torch.Tensor, name: str, spatial_dims: int | None = None) -> int:
    """Validate a ``(B, C, *spatial)`` floating batch and return its number of spatial dims."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, C, *spatial), got {type(x).__name__}")
    nd = x.ndim - 2
    if nd not in (2, 3):
        raise ValueError(f"{name}: expected a (B, C, H, W) or (B, C, D, H, W) batch, got shape {tuple(x.shape)}")
    if spatial_dims is not None and nd != spatial_dims:
        raise ValueError(f"{name}: configured for {spatial_dims}D images but got a {nd}D batch of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point batch, got {x.dtype}; convert with x.float() first")
    return nd


def resolve_device(generator: torch.Generator, device: torch.device | str | None) -> torch.device:
    """The device parameters are drawn on: the generator's (it must match ``device``)."""
    gdev = torch.device(generator.device)
    if device is None:
        return gdev
    device = torch.device(device)
    if device.type != gdev.type:
        raise ValueError(f"the torch.Generator lives on {gdev} but the batch is on {device}; "
                         f"create it with torch.Generator(device={str(device)!r}).manual_seed(seed)")
    return device


def uniform(n: int | Sequence[int], lo: float, hi: float, generator: torch.Generator,
            device: torch.device) -> torch.Tensor:
    """``n`` float32 samples from U[lo, hi)."""
    shape = (n,) if isinstance(n, int) else tuple(n)
    return lo + (hi - lo) * torch.rand(shape, generator=generator, device=device)


def log_uniform(n: int | Sequence[int], lo: float, hi: float, generator: torch.Generator,
                device: torch.device) -> torch.Tensor:
    """Samples whose logarithm is uniform in [log lo, log hi) (for scale-like parameters)."""
    if lo <= 0 or hi <= 0:
        raise ValueError(f"log-uniform range must be positive, got ({lo}, {hi})")
    return torch.exp(uniform(n, float(torch.tensor(lo).log()), float(torch.tensor(hi).log()), generator, device))


def bernoulli(n: int, prob: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) bool, each True with probability ``prob``."""
    if prob >= 1.0:  # still consume the stream so that prob changes do not shift later draws
        torch.rand(n, generator=generator, device=device)
        return torch.ones(n, dtype=torch.bool, device=device)
    return torch.rand(n, generator=generator, device=device) < prob


def draw_seed(generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A (1,) int64 seed for a field generated inside ``apply``."""
    return torch.randint(0, 2**62, (1,), generator=generator, device=device, dtype=torch.int64)


def generator_from(seed: torch.Tensor, device: torch.device) -> torch.Generator:
    """A fresh generator on ``device`` seeded from a ``draw_seed`` tensor."""
    return torch.Generator(device=device).manual_seed(int(seed.reshape(-1)[0].item()))


def per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a (B,) tensor to broadcast against ``x`` of shape (B, ...)."""
    return v.to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))


def apply_subset(x: torch.Tensor, mask: torch.Tensor, params: Params,
                 fn: Callable[[torch.Tensor, Params], torch.Tensor], inplace: bool = False) -> torch.Tensor:
    """Apply ``fn(x_sel, params_sel)`` to the samples where ``mask`` is True.

    Selected samples are gathered once, transformed together and scattered back (no per-
    sample loop; on CPU, runs of consecutive selected samples are transformed through views
    instead, which saves the gather copy); unselected samples are returned unchanged. Per-sample entries of
    ``params`` (first dim == B) are indexed alongside; others (seeds) are passed as is.
    ``fn`` must not modify its input. With ``inplace=True`` the result is scattered into
    ``x`` itself (for batches the caller owns, e.g. inside a pipeline).
    """
    b = x.shape[0]
    n = int(mask.sum().item())
    if n == b:
        return fn(x, params)
    if n == 0:
        return x
    idx = mask.nonzero().squeeze(1)
    out = x if inplace else x.clone()
    if x.device.type == "cpu" and "seed" not in params:
        # CPU: transform runs of consecutive selected samples through views (no gather copy).
        # Transforms with a seeded random field keep the single gather so that the field is
        # drawn once for the whole selection.
        from medssl.transforms.resample import contiguous_runs

        for start, stop in contiguous_runs(idx):
            sub = {k: (v[start:stop] if v.ndim > 0 and v.shape[0] == b else v) for k, v in params.items()}
            out[start:stop] = fn(x[start:stop], sub)
        return out
    sub = {k: (v[idx] if v.ndim > 0 and v.shape[0] == b and k != "seed" else v) for k, v in params.items()}
    out[idx] = fn(x[idx], sub)
    return out


class RandomTransform:
    """Base class: ``prob`` per sample, ``sample_params`` / ``apply`` / ``__call__``.

    Subclasses implement ``_sample(b, spatial_shape, generator, device) -> Params`` (without
    ``"apply"``) and ``_apply(x, params) -> x`` on the selected samples only.
    """

    #: name used in reprs and error messages
    name = "transform"

    def __init__(self, prob: float = 1.0) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"{type(self).__name__}: prob must be in [0, 1], got {prob}")
        self.prob = float(prob)

    def sample_params(self, shape: Sequence[int], generator: torch.Generator,
                      device: torch.device | str | None = None) -> Params:
        """Draw parameters for a batch of ``shape`` = (B, C, *spatial) from ``generator``."""
        device = resolve_device(generator, device)
        b = int(shape[0])
        params = {"apply": bernoulli(b, self.prob, generator, device)}
        params.update(self._sample(b, tuple(int(s) for s in shape[2:]), generator, device))
        return params

    def apply(self, x: torch.Tensor, params: Params, inplace: bool = False) -> torch.Tensor:
        """Deterministically apply ``params`` (from :meth:`sample_params`) to ``x``.

        ``x`` is never modified unless ``inplace=True`` (then unselected samples are left
        in place and selected ones are overwritten; the result may still be a new tensor).
        """
        check_batch(x, type(self).__name__)
        return apply_subset(x, params["apply"], params, self._apply, inplace)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample_params(x.shape, generator, x.device))

    def _sample(self, b: int, spatial_shape: tuple[int, ...], generator: torch.Generator,
                device: torch.device) -> Params:
        raise NotImplementedError

    def _apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
