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

import math
import threading
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


def check_voxel_scale(name: str, voxel_scale: Sequence[float] | None) -> tuple[float, ...] | None:
    """Validate the per-axis multiplier of a transform's voxel-unit strengths.

    ``voxel_scale[a]`` = reference spacing / data spacing along spatial axis ``a`` (tensor
    order): a strength tuned as ``s`` voxels at the reference spacing is ``s * voxel_scale[a]``
    voxels on the data's grid (the same millimetres). ``None`` = no rescaling.
    """
    if voxel_scale is None:
        return None
    scale = tuple(float(v) for v in voxel_scale)
    if not scale or not all(math.isfinite(v) and v > 0 for v in scale):
        raise ValueError(f"{name}: voxel_scale must be positive finite numbers (one per spatial axis), "
                         f"got {voxel_scale!r}")
    return scale


def voxel_scale_tensor(name: str, voxel_scale: tuple[float, ...] | None, d: int,
                       device: torch.device) -> torch.Tensor | None:
    """(D,) float32 tensor of ``voxel_scale`` for a ``d``-dimensional batch (None stays None)."""
    if voxel_scale is None:
        return None
    if len(voxel_scale) != d:
        raise ValueError(f"{name}: voxel_scale has {len(voxel_scale)} entries but the batch is {d}D; "
                         f"give one entry per spatial axis")
    return torch.tensor(voxel_scale, dtype=torch.float32, device=device)


def generator_from(seed: torch.Tensor, device: torch.device) -> torch.Generator:
    """A fresh generator on ``device`` seeded from a ``draw_seed`` tensor."""
    return torch.Generator(device=device).manual_seed(int(seed.reshape(-1)[0].item()))


def per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a (B,) tensor to broadcast against ``x`` of shape (B, ...)."""
    return v.to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))


#: CPU: a transform runs on chunks of whole samples of at most this many elements (8 MB of
#: float32), so that its temporaries are recycled by the allocator (larger blocks come as
#: fresh pages, whose first touch costs ~0.5 ms per MB) and stay in the last-level cache.
CPU_CHUNK_ELEMENTS = 1 << 21


_SCRATCH = threading.local()


def scratch_like(x: torch.Tensor, slot: int = 0, shape: Sequence[int] | None = None) -> torch.Tensor:
    """An uninitialised tensor shaped like ``x`` (or ``shape``), with its dtype and device, for
    temporaries that never leave a transform.

    On CPU the memory of each ``slot`` is kept (per thread) and reused by later calls: a fresh
    8 MB block costs ~4 ms of page faults on first touch, more than most transforms spend
    computing on it, and the allocator returns large blocks to the OS. Two live scratch
    tensors must use different slots. Elsewhere (GPUs, with their caching allocator) this is
    ``torch.empty``. :func:`clear_scratch` releases the memory.
    """
    shape = tuple(x.shape) if shape is None else tuple(shape)
    if x.device.type != "cpu":
        return torch.empty(shape, dtype=x.dtype, device=x.device)
    n = math.prod(shape)
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get((slot, x.dtype))
    if buf is None or buf.numel() < n:
        buf = bufs[(slot, x.dtype)] = torch.empty(n, dtype=x.dtype)
    return buf[:n].view(shape)


def clear_scratch() -> None:
    """Release this thread's CPU scratch memory (see :func:`scratch_like`)."""
    _SCRATCH.__dict__.pop("bufs", None)


def cpu_chunks(mask: torch.Tensor, x: torch.Tensor) -> list[tuple[int, int]]:
    """(start, stop) chunks of consecutive selected samples of ``x``, each at most
    ``CPU_CHUNK_ELEMENTS`` elements (but at least one sample)."""
    from medssl.transforms.resample import contiguous_runs

    step = max(1, CPU_CHUNK_ELEMENTS // max(1, x[0].numel()))
    return [(i, min(i + step, stop)) for start, stop in contiguous_runs(mask.nonzero().squeeze(1))
            for i in range(start, stop, step)]


def _rows(params: Params, b: int, start: int, stop: int) -> Params:
    return {k: (v[start:stop] if v.ndim > 0 and v.shape[0] == b and k != "seed" else v) for k, v in params.items()}


def apply_subset(x: torch.Tensor, mask: torch.Tensor, params: Params,
                 fn: Callable[[torch.Tensor, Params], torch.Tensor], inplace: bool = False,
                 fn_into: Callable[[torch.Tensor, Params, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Apply ``fn(x_sel, params_sel)`` to the samples where ``mask`` is True.

    Selected samples are gathered once, transformed together and scattered back (no per-
    sample loop); unselected samples are returned unchanged. Per-sample entries of
    ``params`` (first dim == B) are indexed alongside; others (seeds) are passed as is.
    ``fn`` must not modify its input. With ``inplace=True`` the result is scattered into
    ``x`` itself (for batches the caller owns, e.g. inside a pipeline).

    On CPU, no gather copy: chunks of consecutive selected samples (:func:`cpu_chunks`) are
    transformed through views — in place by ``fn_into(x_sel, params_sel, out=x_sel)`` when
    the transform provides it, else by ``fn`` and copied back. Transforms with a seeded
    random field then receive the generator of the whole selection as ``params["_generator"]``
    and draw from it chunk by chunk, in sample order (the values equal the gather path's when
    each chunk's voxel count is a multiple of 16: torch's CPU normal sampler works in blocks of 16).
    """
    b = x.shape[0]
    n = int(mask.sum().item())
    if n == 0:
        return x
    if n == b and fn_into is None:  # (``fn`` may change the shape: crops)
        return fn(x, params)
    if x.device.type == "cpu" and (fn_into is not None or "seed" not in params):
        out = x if inplace else x.clone()
        shared = {"_generator": generator_from(params["seed"], x.device)} if "seed" in params else {}
        for start, stop in cpu_chunks(mask, x):
            sub = {**_rows(params, b, start, stop), **shared}
            if fn_into is not None:
                fn_into(out[start:stop], sub, out[start:stop])
            else:
                out[start:stop] = fn(x[start:stop], sub)
        return out
    if n == b:
        return fn(x, params)
    idx = mask.nonzero().squeeze(1)
    out = x if inplace else x.clone()
    sub = {k: (v[idx] if v.ndim > 0 and v.shape[0] == b and k != "seed" else v) for k, v in params.items()}
    out[idx] = fn(x[idx], sub)
    return out


class RandomTransform:
    """Base class: ``prob`` per sample, ``sample_params`` / ``apply`` / ``__call__``.

    Subclasses implement ``_sample(b, spatial_shape, generator, device) -> Params`` (without
    ``"apply"``) and ``_apply(x, params) -> x`` on the selected samples only, or instead
    ``_apply_into(x, params, out) -> out`` (which may run in place, ``out is x``).
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
        into = self._apply_into if type(self)._apply_into is not RandomTransform._apply_into else None
        return apply_subset(x, params["apply"], params, self._apply, inplace, into)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample_params(x.shape, generator, x.device))

    def _sample(self, b: int, spatial_shape: tuple[int, ...], generator: torch.Generator,
                device: torch.device) -> Params:
        raise NotImplementedError

    def _apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        if type(self)._apply_into is RandomTransform._apply_into:
            raise NotImplementedError
        return self._apply_into(x, params, torch.empty_like(x))

    def _apply_into(self, x: torch.Tensor, params: Params, out: torch.Tensor) -> torch.Tensor:
        """Optional: write the result for the selected samples ``x`` into ``out`` (same
        shape, possibly ``x`` itself, so read each element before writing it) and return it.
        Used in place on CPU (see :func:`apply_subset`); ``_apply`` then defaults to it."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
