"""CPU path of the batch transforms (chunks of samples, in place, scratch memory) = the gather path."""

from __future__ import annotations

import pytest
import torch
from aug_helpers import gen

import medssl.transforms.base as base
from medssl.transforms.artefacts import RandomCutout
from medssl.transforms.base import clear_scratch, scratch_like
from medssl.transforms.intensity import (RandomBiasField, RandomGamma, RandomGaussianBlur, RandomGaussianNoise,
                                         RandomRicianNoise, RandomScaleShift, _sample_min_max, gaussian_blur)

TRANSFORMS = [RandomGamma(1.0), RandomScaleShift(1.0), RandomBiasField(1.0, coeff=0.5),
              RandomGaussianNoise(1.0, std=(0.2, 0.5)), RandomRicianNoise(1.0, std=(0.2, 0.5)),
              RandomGaussianBlur(1.0, sigma=(0.5, 1.5)), RandomCutout(1.0, fill="mean"), RandomCutout(1.0, fill=-2.0)]


def _gather_reference(tr, x, params):
    """The route taken on GPUs: gather the selected samples, one ``_apply``, scatter back."""
    idx = params["apply"].nonzero().squeeze(1)
    sub = {k: (v[idx] if v.ndim > 0 and v.shape[0] == x.shape[0] and k != "seed" else v) for k, v in params.items()}
    out = x.clone()
    out[idx] = tr._apply(x[idx], sub)
    return out


@pytest.mark.parametrize("tr", TRANSFORMS, ids=lambda t: f"{t.name}")
@pytest.mark.parametrize("chunk", [1, 10**9], ids=["one-sample-chunks", "whole-runs"])
@pytest.mark.parametrize("shape", [(6, 8, 10), (12, 20)], ids=["3d", "2d"])
def test_cpu_chunks_in_place_equal_the_gather_path(tr, chunk, shape, monkeypatch):
    monkeypatch.setattr(base, "CPU_CHUNK_ELEMENTS", chunk)
    # 2 x 480 or 2 x 240 elements per sample: multiples of 16, which torch's CPU normal sampler
    # needs to draw the same values in chunks as at once
    x = torch.randn((5, 2) + shape, generator=gen(0))
    x0 = x.clone()
    params = tr.sample_params(x.shape, gen(1))
    params["apply"] = torch.tensor([True, False, True, True, False])
    ref = _gather_reference(tr, x, params)
    copy = tr.apply(x, params)
    assert torch.equal(x, x0)  # not in place: input untouched
    y = x.clone()
    inplace = tr.apply(y, params, inplace=True)
    for out in (copy, inplace):
        assert torch.allclose(out, ref, atol=1e-6)
        assert torch.equal(out[[1, 4]], x0[[1, 4]])  # unselected samples bit-for-bit
    assert inplace.data_ptr() == y.data_ptr()
    assert (ref[[0, 2, 3]] - x0[[0, 2, 3]]).abs().max() > 1e-3  # the transform did something


def test_blur_in_place_equals_blur_into_a_new_tensor():
    x = torch.randn(3, 1, 9, 10, 11, generator=gen(2))
    sigma = torch.tensor([[0.8, 1.2, 0.5], [1.0, 0.0, 0.7], [0.3, 0.6, 1.4]])
    ref = gaussian_blur(x, sigma)
    y = x.clone()
    assert gaussian_blur(y, sigma, out=y) is y and torch.allclose(y, ref, atol=1e-6)


def test_sample_min_max_equals_aminmax():
    x = torch.randn(4, 2, 5, 6, 7, generator=gen(3))
    lo, hi = _sample_min_max(x)
    ref = torch.aminmax(x.reshape(4, -1), dim=1)
    assert torch.equal(lo, ref.min) and torch.equal(hi, ref.max)


def test_scratch_is_reused_per_slot_grows_and_is_released():
    clear_scratch()
    x = torch.zeros(2, 3, 4)
    a, b = scratch_like(x, 0), scratch_like(x, 1)
    assert a.shape == x.shape and a.dtype == x.dtype and a.data_ptr() != b.data_ptr()
    assert scratch_like(x[:1], 0).data_ptr() == a.data_ptr()  # same memory again, smaller view
    big = scratch_like(torch.zeros(50), 0)
    assert big.shape == (50,) and scratch_like(x, 0).data_ptr() == big.data_ptr()
    assert scratch_like(x.double(), 0).dtype == torch.float64
    clear_scratch()
    assert scratch_like(torch.zeros(1, 1, 2, device="meta")).device.type == "meta"  # non-CPU: a new tensor
