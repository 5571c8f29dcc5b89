"""The documented ViT options act on the network: learnable vs fixed sin-cos positions, dropout (active in
training only, eval stays deterministic), and the position resampling of 2D patch grids."""

import numpy as np
import pytest
import torch

from medssl.encoders import build_encoder
from medssl.heads.decoders import sincos_position_embedding

TINY = {"img_size": 16, "patch_size": 8, "hidden_size": 12, "num_layers": 1, "num_heads": 2}


@pytest.mark.parametrize("dims", [2, 3])
def test_sincos_positions_are_fixed_and_learnable_ones_are_trained(dims):
    """MAE's fixed 2D/3D sin-cos table (no gradient) vs a trained table that receives a gradient."""
    torch.manual_seed(0)
    fixed = build_encoder("vit_tiny", spatial_dims=dims, **TINY)
    pos = fixed.net.patch_embedding.position_embeddings
    assert not pos.requires_grad
    torch.testing.assert_close(pos.detach(), sincos_position_embedding((2,) * dims, 12))
    learnable = build_encoder("vit_tiny", spatial_dims=dims, pos_embed="learnable", **TINY)
    learnable(torch.randn(2, 1, *[16] * dims)).square().sum().backward()
    pos = learnable.net.patch_embedding.position_embeddings
    assert pos.requires_grad and pos.grad is not None and pos.grad.abs().sum() > 0


def test_vit_dropout_acts_in_training_only():
    """``dropout`` reaches the blocks (two training passes differ) and eval mode is deterministic even then
    (MONAI's fused attention path would apply attention dropout in eval mode too)."""
    torch.manual_seed(0)
    enc = build_encoder("vit_tiny", spatial_dims=2, dropout=0.3, **TINY)
    x = torch.randn(2, 1, 16, 16)
    assert not torch.equal(enc.train()(x), enc(x))
    with torch.no_grad():
        enc.eval()
        assert torch.equal(enc(x), enc(x))


def test_2d_positions_on_another_grid_are_the_separable_linear_resampling_of_the_built_ones():
    """Built for 16 x 24 (grid 2 x 3), a 32 x 16 input (grid 4 x 2) gets the built table resampled linearly along
    each axis (half-voxel centres, ends clamped), written with np.interp."""
    enc = build_encoder("vit_tiny", spatial_dims=2, img_size=(16, 24), patch_size=8, hidden_size=12, num_layers=1,
                        num_heads=2, pos_embed="learnable")
    with torch.no_grad():
        enc.net.patch_embedding.position_embeddings.normal_()
    expected = enc.net.patch_embedding.position_embeddings.detach().numpy().reshape(2, 3, 12)
    for axis, size in enumerate((4, 2)):
        n = expected.shape[axis]
        coords = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
        expected = np.apply_along_axis(lambda v: np.interp(coords, np.arange(n), v), axis, expected)
    got = enc.position_embeddings((4, 2)).detach().numpy()
    np.testing.assert_allclose(got, expected.reshape(1, 8, 12), atol=1e-5)


def test_patch_dim_is_the_size_of_a_patchified_multichannel_patch():
    """``patch_dim`` (the MAE decoder's prediction size per token) counts every channel: it is the token size of
    the MAE targets, ``patchify`` of a 2-channel batch, whose token count is the encoder's."""
    from medssl.transforms.masking import patchify

    enc = build_encoder("vit_tiny", spatial_dims=3, in_channels=2, **TINY).eval()
    x = torch.randn(1, 2, 16, 16, 16)
    targets = patchify(x, 8)
    with torch.no_grad():
        assert targets.shape == (1, enc.forward_features(x).shape[1], enc.patch_dim) == (1, 8, 2 * 8 ** 3)
