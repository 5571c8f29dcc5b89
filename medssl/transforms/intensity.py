"""Intensity batch augmentations (per-sample random parameters, no spatial change).

All transforms take ``(B, C, *spatial)`` batches, 2D or 3D, on any device. Input is assumed
intensity-normalised already (z-score or [0, 1]). Transforms that model a physical effect
on *magnitude* images (gamma, bias field, Rician noise) work relative to each sample's
minimum, so they behave the same on z-scored data (background < 0) and on [0, 1] data.
"""

from __future__ import annotations

import math

import torch

from medssl.transforms.base import (Params, RandomTransform, check_voxel_scale, draw_seed, generator_from,
                                    log_uniform, per_sample, scratch_like, uniform, voxel_scale_tensor)


def _sample_min_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) minimum and maximum of each sample (all channels).

    On CPU two reductions: ``amin``/``amax`` are vectorised there, ``aminmax(dim=...)`` is ~10x slower.
    """
    flat = x.reshape(x.shape[0], -1)
    if x.device.type != "cpu":
        return torch.aminmax(flat, dim=1)
    return flat.amin(1), flat.amax(1)


def _noise_generator(params: Params, device: torch.device) -> torch.Generator:
    """The generator of a seeded field: shared across CPU chunks (``_generator``), else from the seed."""
    return params["_generator"] if "_generator" in params else generator_from(params["seed"], device)


class RandomGamma(RandomTransform):
    """Gamma contrast: ``((x - min) / range) ** gamma * range + min`` per sample.

    Same formula as MONAI ``RandAdjustContrast``; the min and range are those of each
    sample (all channels), so the intensity range is preserved.

    Args:
        prob: probability per sample.
        gamma: range of gamma, sampled log-uniformly (so that 1/g and g are equally likely).
    """

    name = "gamma"

    def __init__(self, prob: float = 0.5, gamma: tuple[float, float] = (0.7, 1.5)) -> None:
        super().__init__(prob)
        self.gamma = (float(gamma[0]), float(gamma[1]))

    def _sample(self, b, spatial_shape, generator, device):
        return {"gamma": log_uniform(b, *self.gamma, generator, device)}

    def _apply_into(self, x, params, out):
        lo, hi = _sample_min_max(x)
        lo, rng = per_sample(lo, x), per_sample(hi - lo, x).clamp(min=1e-7)
        return torch.sub(x, lo, out=out).div_(rng).clamp_(min=0).pow_(per_sample(params["gamma"], x)).mul_(rng).add_(lo)


class RandomScaleShift(RandomTransform):
    """Brightness / contrast scaling: ``x * scale + shift`` per sample.

    Args:
        prob: probability per sample.
        scale: range of the multiplicative factor.
        shift: maximum absolute additive shift (units of the normalised input: SDs for
            z-scored data, fraction of the range for [0, 1] data).
    """

    name = "scale_shift"

    def __init__(self, prob: float = 0.5, scale: tuple[float, float] = (0.9, 1.1), shift: float = 0.1) -> None:
        super().__init__(prob)
        self.scale, self.shift = (float(scale[0]), float(scale[1])), float(shift)

    def _sample(self, b, spatial_shape, generator, device):
        return {"scale": uniform(b, *self.scale, generator, device),
                "shift": uniform(b, -self.shift, self.shift, generator, device)}

    def _apply_into(self, x, params, out):
        return torch.mul(x, per_sample(params["scale"], x), out=out).add_(per_sample(params["shift"], x))


def legendre_basis(n: int, order: int, device: torch.device) -> torch.Tensor:
    """(order+1, n) Legendre polynomials P_0..P_order on n points spanning [-1, 1] (cell centres)."""
    u = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n * 2 - 1
    polys = [torch.ones_like(u), u]
    for k in range(1, order):
        polys.append(((2 * k + 1) * u * polys[k] - k * polys[k - 1]) / (k + 1))
    return torch.stack(polys[: order + 1])


class RandomBiasField(RandomTransform):
    """Smooth multiplicative MRI bias field ``exp(sum_{i+j+k<=order} c_ijk P_i P_j P_k)``.

    Coefficients ``c ~ U(-coeff, coeff)`` over products of Legendre polynomials (as MONAI
    ``RandBiasField`` and TorchIO ``RandomBiasField``). Two differences from MONAI: the
    polynomials are evaluated at voxel centres ``(i + 0.5) / n · 2 − 1`` (MONAI: ``linspace(-1,
    1, n)``, so its field reaches the polynomials' end values at the border voxels), and the
    field multiplies the magnitude, i.e. ``(x - min) * field + min`` per sample (MONAI: ``x``),
    so that it brightens or darkens every voxel alike, background included (on z-scored data
    MONAI's ``x * field`` darkens the negative background where it brightens tissue). The
    background (the minimum) stays put; other values may change sign.

    Args:
        prob: probability per sample.
        coeff: maximum absolute coefficient.
        order: maximum total polynomial degree.
    """

    name = "bias_field"

    def __init__(self, prob: float = 0.3, coeff: float = 0.3, order: int = 3) -> None:
        super().__init__(prob)
        self.coeff, self.order = float(coeff), int(order)

    def _sample(self, b, spatial_shape, generator, device):
        d, n = len(spatial_shape), self.order + 1
        c = uniform((b,) + (n,) * d, -self.coeff, self.coeff, generator, device)
        degree = sum(torch.meshgrid(*[torch.arange(n, device=device)] * d, indexing="ij"))
        return {"coeffs": c * (degree <= self.order)}

    def field(self, params: Params, spatial_shape: tuple[int, ...], out: torch.Tensor | None = None) -> torch.Tensor:
        """(B, *spatial) log-field evaluated separably on the voxel grid (into ``out`` if given).

        The coefficients are contracted with the bases of the leading axes first (small
        tensors), so the full-size output is one batched matrix product with the last basis.
        """
        c = params["coeffs"]
        b, n = c.shape[0], self.order + 1
        bases = [legendre_basis(s, self.order, c.device) for s in spatial_shape]
        if len(spatial_shape) == 2:
            lead = torch.einsum("bij,ix->bxj", c, bases[0])  # (B, X, n)
        else:
            lead = torch.einsum("bxjk,jy->bxyk", torch.einsum("bijk,ix->bxjk", c, bases[0]), bases[1])
        if out is None:
            return (lead.reshape(b, -1, n) @ bases[-1]).reshape((b,) + tuple(spatial_shape))
        return torch.matmul(lead.reshape(b, -1, n), bases[-1], out=out.view(b, -1, spatial_shape[-1])).view(out.shape)

    def _apply_into(self, x, params, out):
        if x.dtype == torch.float32:  # field computed in the scratch memory
            f = self.field(params, tuple(x.shape[2:]), scratch_like(x[:, 0])).unsqueeze(1).exp_()
        else:
            f = self.field(params, tuple(x.shape[2:])).to(x.dtype).unsqueeze(1).exp_()
        lo = per_sample(_sample_min_max(x)[0], x)
        return torch.sub(x, lo, out=out).mul_(f).add_(lo)


class RandomGaussianNoise(RandomTransform):
    """Additive Gaussian noise with a per-sample standard deviation ``~ U(std)``.

    Args:
        prob: probability per sample.
        std: range of the noise SD in normalised intensity units.
    """

    name = "gaussian_noise"

    def __init__(self, prob: float = 0.5, std: tuple[float, float] = (0.0, 0.1)) -> None:
        super().__init__(prob)
        self.std = (float(std[0]), float(std[1]))

    def _sample(self, b, spatial_shape, generator, device):
        return {"std": uniform(b, *self.std, generator, device), "seed": draw_seed(generator, device)}

    def _apply_into(self, x, params, out):
        noise = torch.randn(x.shape, generator=_noise_generator(params, x.device), out=scratch_like(x))
        return torch.addcmul(x, noise, per_sample(params["std"], x), out=out)


class RandomRicianNoise(RandomGaussianNoise):
    """Rician noise of magnitude MRI: ``sqrt((m + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, std^2)``.

    ``m = x - min`` per sample (the magnitude; background at 0), and the minimum is added
    back, so z-scored input keeps its offset. Parameters are drawn as for
    :class:`RandomGaussianNoise`.

    Args:
        prob: probability per sample.
        std: range of the noise SD in normalised intensity units.
    """

    name = "rician_noise"

    def __init__(self, prob: float = 0.2, std: tuple[float, float] = (0.0, 0.05)) -> None:
        super().__init__(prob, std)

    def _apply_into(self, x, params, out):
        # the two fields of each sample are drawn together, sample after sample
        pair = (x.shape[0], 2) + tuple(x.shape[1:])
        noise = torch.randn(pair, generator=_noise_generator(params, x.device), out=scratch_like(x, shape=pair))
        noise.mul_(per_sample(params["std"], noise))
        lo = per_sample(_sample_min_max(x)[0], x)
        return torch.hypot(noise[:, 0].add_(x).sub_(lo), noise[:, 1], out=out).add_(lo)


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, 2*radius+1) normalised 1D Gaussian kernels; sigma (N,) in voxels, 0 gives a delta."""
    r = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    s = sigma.float().clamp(min=1e-3)[:, None]
    k = torch.exp(-0.5 * (r[None] / s) ** 2)
    return k / k.sum(1, keepdim=True)


def _shifted_sum(y: torch.Tensor, axis: int, k: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_j k[:, j] * y[i + j - r]`` along ``axis`` with edge replication, without padding.

    Args:
        y: (B, C, *S); k: (B, 2r + 1) per-sample weights; out: optional result tensor
            (not ``y``).
    """
    n, r = y.shape[axis], (k.shape[1] - 1) // 2
    view = (-1,) + (1,) * (y.ndim - 1)
    out = torch.mul(y, k[:, r].reshape(view), out=out)
    for j in range(2 * r + 1):  # loop over taps; each is a whole-batch op
        o = j - r
        if o == 0:
            continue
        w = k[:, j].reshape(view)
        m = n - abs(o)
        if m > 0:  # interior: out[i] += w * y[i + o]
            out.narrow(axis, max(0, -o), m).addcmul_(y.narrow(axis, max(0, o), m), w)
        edge = y.narrow(axis, n - 1 if o > 0 else 0, 1)  # clamped part reads the edge slice
        out.narrow(axis, max(m, 0) if o > 0 else 0, min(abs(o), n)).addcmul_(edge, w)
    return out


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Separable Gaussian blur with a different sigma per sample and axis.

    Args:
        x: (B, C, *S).
        sigma: (B, D) standard deviations in voxels (0 = no blur along that axis).
        out: optional (B, C, *S) result tensor; may be ``x`` itself (blur in place).

    Returns:
        (B, C, *S), edges replicated. Each axis is a weighted sum of ``2r + 1`` shifted
        copies with per-sample weights (r = ceil(3 max sigma)): the whole batch at once,
        memory-bound and faster than a grouped convolution on CPU. The axes alternate
        between two scratch tensors (:func:`~medssl.transforms.base.scratch_like`) and the
        last one writes ``out``.
    """
    d = x.ndim - 2
    radius = max(1, int(math.ceil(3.0 * float(sigma.max()))))
    scratch = [scratch_like(x, 0), scratch_like(x, 1) if d > 2 else None]
    y = x
    for axis in range(d):
        k = gaussian_kernels(sigma[:, axis], radius).to(x.dtype)
        y = _shifted_sum(y, 2 + axis, k, out if axis == d - 1 else scratch[axis % 2])
    return y


class RandomGaussianBlur(RandomTransform):
    """Gaussian smoothing with per-sample, per-axis sigma ``~ U(sigma)`` voxels (like MONAI
    ``RandGaussianSmooth``, with two differences: a sampled, normalised Gaussian kernel instead
    of MONAI's default erf kernel, which differ most for sigma < 1; and edge replication at the
    border, as scipy's ``mode="nearest"``, where MONAI pads with zeros and so pulls the border of
    z-scored images towards 0).

    Args:
        prob: probability per sample.
        sigma: range of the standard deviation in voxels (at the reference spacing when
            ``voxel_scale`` is given).
        voxel_scale: optional per-axis factor (reference spacing / data spacing) multiplying
            the drawn sigma, so that the blur has the same width in mm on any grid; ``None``
            = sigma in voxels of the data's grid.
    """

    name = "gaussian_blur"

    def __init__(self, prob: float = 0.2, sigma: tuple[float, float] = (0.25, 1.0),
                 voxel_scale: tuple[float, ...] | None = None) -> None:
        super().__init__(prob)
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.voxel_scale = check_voxel_scale("RandomGaussianBlur", voxel_scale)

    def _sample(self, b, spatial_shape, generator, device):
        sigma = uniform((b, len(spatial_shape)), *self.sigma, generator, device)
        scale = voxel_scale_tensor("RandomGaussianBlur", self.voxel_scale, len(spatial_shape), device)
        return {"sigma": sigma if scale is None else sigma * scale}

    def _apply_into(self, x, params, out):
        return gaussian_blur(x, params["sigma"], out)


__all__ = ["RandomBiasField", "RandomGamma", "RandomGaussianBlur", "RandomGaussianNoise", "RandomRicianNoise",
           "RandomScaleShift", "gaussian_blur", "gaussian_kernels", "legendre_basis"]
