"""Models Genesis (Zhou et al., MedIA 2021): U-Net decoder on every CNN encoder family,
restoration loss, corruption inputs, and a few training steps on a fixed batch."""

import pytest
import torch
import torch.nn.functional as F

from medssl.encoders import build_encoder
from medssl.heads.decoders import UNetDecoder
from medssl.methods.genesis import ModelsGenesis, minmax_per_sample


def blobs(n: int, dims: int, side: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (blurred noise), (n, 1, *[side] * dims)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, *[side] * dims, generator=g)
    pool = F.avg_pool3d if dims == 3 else F.avg_pool2d
    return minmax_per_sample(pool(x, 5, 1, 2, count_include_pad=False))


@pytest.mark.parametrize("name, options, dims, side", [
    ("resnet18", {"width": 4}, 3, 16),
    ("resnet10", {"width": 4, "conv1_stride": 1, "no_max_pool": True}, 3, 20),  # other strides: 1,1,2,4,8
    ("densenet121", {"width": 2}, 2, 32),
    ("alexnet", {"width": 4}, 2, 72),
])
def test_restoration_has_the_input_shape_for_every_cnn_family(name, options, dims, side):
    enc = build_encoder(name, spatial_dims=dims, in_channels=2, **options)
    method = ModelsGenesis(enc)
    x = torch.rand(2, 2, *[side] * dims)
    y = method.restore(x)
    assert y.shape == x.shape and ((y > 0) & (y < 1)).all()
    y.mean().backward()
    assert all(p.grad is not None for p in method.decoder.parameters())


def test_loss_is_mse_between_restoration_and_uncorrupted_input():
    method = ModelsGenesis(build_encoder("resnet10", width=4)).eval()
    x = blobs(2, 3, 24) * 3 - 1  # not in [0, 1]: rescaled first
    out = method.training_step({"image": x}, torch.Generator().manual_seed(7))
    corrupted, target = method.corrupt(x, torch.Generator().manual_seed(7))
    assert torch.allclose(target, minmax_per_sample(x))
    assert target.min() == 0 and target.max() == 1 and not torch.equal(corrupted, target)
    with torch.no_grad():
        naive = ((method.restore(corrupted) - target) ** 2).sum() / target.numel()
    assert out.loss.item() == pytest.approx(naive.item(), rel=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(dims):
    torch.manual_seed(0)
    side = 32 if dims == 2 else 16
    method = ModelsGenesis(build_encoder("resnet10", spatial_dims=dims, width=4, conv1_kernel=3))
    x = blobs(4, dims, side)
    opt = torch.optim.AdamW(method.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        out = method.training_step({"image": x}, torch.Generator().manual_seed(0))  # same corruption each step
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.75 * losses[0], losses


def test_decoder_and_method_errors():
    with pytest.raises(ValueError, match="CNN encoder"):
        ModelsGenesis(build_encoder("vit_tiny", img_size=16, patch_size=8, hidden_size=48, num_layers=1, num_heads=2))
    with pytest.raises(ValueError, match="one per skip level"):
        UNetDecoder([4, 8, 16], 1, 3, channels=[4])
    assert torch.equal(minmax_per_sample(torch.ones(2, 1, 4, 4)), torch.zeros(2, 1, 4, 4))  # constant → 0


def test_rescale_false_refuses_inputs_outside_0_1():
    """The corruptions clamp intensities to [0, 1] and the sigmoid output cannot reach a target outside it: with
    ``rescale: false`` a z-scored (or HU) batch used to train silently on a target the model can never match."""
    method = ModelsGenesis(build_encoder("resnet10", width=4), rescale=False)
    x = blobs(2, 3, 16)
    assert torch.isfinite(method.training_step({"image": x}, torch.Generator().manual_seed(0)).loss)  # in [0, 1]
    with pytest.raises(ValueError, match=r"rescale: false.*\[-1, 2\].*rescale: true"):
        method.training_step({"image": x * 3 - 1}, torch.Generator().manual_seed(0))


def test_pretraining_rescales_the_whole_scan_as_evaluation_does_not_each_crop():
    """Pretraining min-max rescaled each random crop, evaluation (MinMaxInput) each whole scan: a crop without the
    scan's bright tissue was stretched to [0, 1] in pretraining, not at evaluation. The paper's pipeline rescales
    the scan (CT: [-1000, 1000] HU → [0, 1]) and then crops sub-volumes; pretraining now does the same."""
    from medssl.methods.genesis import MinMaxInput

    scan = blobs(2, 3, 16) * 0.2
    scan[:, :, 8:] += 5.0  # bright tissue in the far half only
    crop = lambda x, g: x[:, :, :8, :8, :8]  # noqa: E731  (a fixed crop: the dim half)
    method = ModelsGenesis(build_encoder("resnet10", width=4), views=crop)
    _, target = method.corrupt(scan * 7 - 3, torch.Generator().manual_seed(0))  # any intensity unit
    seen_at_evaluation = MinMaxInput(torch.nn.Identity())(scan)  # what evaluation gives the encoder
    assert torch.allclose(target, seen_at_evaluation[:, :, :8, :8, :8], atol=1e-6)
    assert target.max() < 0.1  # not stretched to [0, 1]


def test_views_that_leave_0_1_are_clamped_after_the_scan_is_rescaled():
    """Intensity augmentations (noise, bias field) after the whole-scan rescaling can leave [0, 1], where the
    sigmoid output cannot follow: the views' output is clamped to [0, 1]."""
    method = ModelsGenesis(build_encoder("resnet10", width=4), views=lambda x, g: x * 1.5 - 0.2)
    x = blobs(2, 3, 16) * 3 - 1
    _, target = method.corrupt(x, torch.Generator().manual_seed(0))
    assert torch.allclose(target, (minmax_per_sample(x) * 1.5 - 0.2).clamp(0, 1))
