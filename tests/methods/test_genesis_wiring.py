"""Models Genesis method wiring: per-scan rescaling, the input check, and the corruption probabilities the method
is given reaching its corruptions (Zhou et al., MedIA 2021)."""

import numpy as np
import pytest
import torch

from medssl.encoders import build_encoder
from medssl.methods.genesis import ModelsGenesis, minmax_per_sample


def _method(**options):
    return ModelsGenesis(build_encoder("resnet10", width=4), **options)


def _smooth(n: int = 3, side: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, 1, side³) in [0, 1] with distinct values (a ramp plus a little noise)."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, side ** 3).reshape(1, 1, side, side, side)
    return minmax_per_sample(ramp + 0.01 * torch.rand(n, 1, side, side, side, generator=g))


def test_minmax_rescales_each_sample_by_its_own_range():
    """Two scans of very different ranges: each becomes the naive (x - min) / (max - min) of itself, not of the
    batch (a batch-wide range would leave the dim scan near 0)."""
    x = torch.stack([torch.linspace(-3, 5, 60), torch.linspace(100, 110, 60) ** 2]).reshape(2, 1, 3, 4, 5)
    a = x.double().numpy().reshape(2, -1)
    naive = (a - a.min(1, keepdims=True)) / (a.max(1, keepdims=True) - a.min(1, keepdims=True))
    np.testing.assert_allclose(minmax_per_sample(x).double().numpy().reshape(2, -1), naive, atol=1e-6)


@pytest.mark.parametrize("shift", [0.5, -0.5])
def test_rescale_false_refuses_a_batch_leaving_0_1_on_one_side_only(shift):
    """A batch in [0.5, 1.5] (or [-0.5, 0.5]) is outside [0, 1] too: the check needs either bound exceeded, not both."""
    with pytest.raises(ValueError, match="rescale: false"):
        _method(rescale=False).corrupt(_smooth() + shift, torch.Generator().manual_seed(0))


def test_the_nonlinear_probability_reaches_the_corruption():
    """nonlinear_prob=1 with shuffling and painting off: every corrupted sample is a monotone map of its target (the
    Bézier transform keeps or reverses the intensity order; shuffling would not)."""
    corrupted, target = _method(nonlinear_prob=1.0, shuffle_prob=0.0, paint_prob=0.0).corrupt(
        _smooth(), torch.Generator().manual_seed(1))
    for c, t in zip(corrupted.flatten(1), target.flatten(1)):
        ordered = c[t.argsort()]
        assert not torch.equal(c, t)
        assert (ordered.diff() >= -1e-6).all() or (ordered.diff() <= 1e-6).all()


def test_the_shuffle_probability_reaches_the_corruption():
    """shuffle_prob=1 alone: every sample keeps its multiset of values (a permutation), and is changed."""
    corrupted, target = _method(nonlinear_prob=0.0, shuffle_prob=1.0, paint_prob=0.0).corrupt(
        _smooth(), torch.Generator().manual_seed(2))
    for c, t in zip(corrupted.flatten(1), target.flatten(1)):
        assert not torch.equal(c, t) and torch.equal(c.sort().values, t.sort().values)


def test_paint_and_outpaint_probabilities_reach_the_corruption():
    """paint_prob=1, outpaint_prob=0: every sample is in-painted, i.e. some voxels replaced, but at most 5 boxes of
    side <= 1/3 (under 19 % of a 3D volume); out-painting would replace most of it, no painting none of it."""
    corrupted, target = _method(nonlinear_prob=0.0, shuffle_prob=0.0, paint_prob=1.0, outpaint_prob=0.0).corrupt(
        _smooth(n=6), torch.Generator().manual_seed(3))
    changed = (corrupted != target).flatten(1).float().mean(1)
    assert (changed > 0).all() and (changed < 5 / 27 + 0.02).all(), changed


def test_only_a_rescaling_run_records_its_rescaling():
    """``input_rescaling`` (written into exports, read by evaluation to wrap the encoder) names the per-scan min-max
    only when pretraining did it; with ``rescale: false`` the inputs were used as they came."""
    assert "min-max" in _method().input_rescaling and _method(rescale=False).input_rescaling == ""


def test_a_wrapped_genesis_encoder_takes_a_fine_tuning_head():
    """Fine-tuning puts ``nn.Linear(encoder.out_dim, n)`` on the evaluated encoder, which for Models Genesis is the
    MinMaxInput wrapper: it exposes the encoder's out_dim, spatial_dims and in_channels, and the head's output is
    the head applied to the encoder's features of the rescaled scan."""
    from medssl.eval.finetune import EncoderWithHead
    from medssl.methods.genesis import MinMaxInput

    enc = build_encoder("resnet10", width=4).eval()
    wrapped = MinMaxInput(enc)
    assert (wrapped.out_dim, wrapped.spatial_dims, wrapped.in_channels) == (enc.out_dim, enc.spatial_dims,
                                                                             enc.in_channels)
    model = EncoderWithHead(wrapped, 3, torch.Generator().manual_seed(0)).eval()
    x = _smooth(n=2) * 40 - 7
    with torch.no_grad():
        assert torch.allclose(model(x), model.head(enc(minmax_per_sample(x))), atol=1e-6)
