"""The heads against their formulas written out: SimCLR's projection MLP, the MAE decoder's assembly of
visible and mask tokens in patch order, and the U-Net decoder's use of every skip connection."""

import torch

from medssl.heads import MAEDecoder, ProjectionHead, UNetDecoder, sincos_position_embedding
from medssl.transforms.masking import random_patch_mask


def test_projection_head_is_linear_batchnorm_relu_linear():
    """SimCLR's g(h) = W2 ReLU(BN(W1 h + b1)) + b2, BN with the batch's mean and (biased) variance in training."""
    torch.manual_seed(0)
    head = ProjectionHead(6, hidden_dim=5, out_dim=3).train()
    with torch.no_grad():
        head[1].weight.uniform_(0.5, 2.0), head[1].bias.uniform_(-1.0, 1.0)
    x = torch.randn(8, 6)
    lin1, bn, _, lin2 = head
    h = x @ lin1.weight.T + lin1.bias
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
    expected = torch.clamp(h, min=0) @ lin2.weight.T + lin2.bias
    torch.testing.assert_close(head(x), expected, rtol=1e-5, atol=1e-5)


def test_mae_decoder_puts_each_token_at_its_patch_before_the_positions_are_added():
    """Written out patch by patch: the full sequence holds the projected latent of kept patch ids_keep[i] at
    position ids_keep[i] and the mask token elsewhere, plus the fixed sin-cos embedding of its grid cell; then
    the blocks, a layer norm (written out) and the prediction layer."""
    torch.manual_seed(0)
    grid = (2, 3, 4)
    dec = MAEDecoder(encoder_dim=10, patch_dim=7, dim=12, depth=1, num_heads=2).eval()
    pm = random_patch_mask(2, 24, 0.75, torch.Generator().manual_seed(3))
    latent = torch.randn(2, pm.ids_keep.shape[1], 10)
    pos = sincos_position_embedding(grid, 12)[0]
    full = dec.mask_token[0].expand(2, 24, 12).clone()
    for b in range(2):
        for i, j in enumerate(pm.ids_keep[b].tolist()):
            full[b, j] = dec.embed(latent[b, i])
    x = full + pos
    for blk in dec.blocks:
        x = blk(x)
    x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + dec.norm.eps)  # LayerNorm
    with torch.no_grad():
        torch.testing.assert_close(dec(latent, pm.ids_restore, grid), dec.pred(x * dec.norm.weight + dec.norm.bias),
                                   rtol=1e-5, atol=1e-5)


def test_unet_decoder_output_depends_on_every_level_of_the_pyramid():
    """A U-Net decoder uses each skip map (not only the coarsest one): changing any level changes the output,
    whose size is the requested input size."""
    torch.manual_seed(0)
    dec = UNetDecoder([4, 6, 8], out_channels=1, spatial_dims=2).eval()
    maps = [torch.randn(1, 4, 16, 16), torch.randn(1, 6, 8, 8), torch.randn(1, 8, 4, 4)]
    with torch.no_grad():
        ref = dec(maps, (32, 32))
        assert ref.shape == (1, 1, 32, 32)
        for level in range(3):
            changed = [m + (5.0 if i == level else 0.0) * torch.randn_like(m) for i, m in enumerate(maps)]
            assert (dec(changed, (32, 32)) - ref).abs().amax() > 1e-4, level


def test_mae_decoder_positions_follow_the_grid_it_is_given():
    """The same number of patches on two grids, (2, 3, 4) then (4, 3, 2): each call adds its own grid's sin-cos
    embedding (a decoder used on another crop size must not reuse the first grid's positions)."""
    torch.manual_seed(0)
    dec = MAEDecoder(encoder_dim=10, patch_dim=7, dim=12, depth=1, num_heads=2).eval()
    pm = random_patch_mask(1, 24, 0.5, torch.Generator().manual_seed(1))
    latent = torch.randn(1, 12, 10)
    with torch.no_grad():
        dec(latent, pm.ids_restore, (2, 3, 4))
        full = torch.cat([dec.embed(latent), dec.mask_token.expand(1, 12, 12)], 1)
        x = full.gather(1, pm.ids_restore[..., None].expand(-1, -1, 12)) + sincos_position_embedding((4, 3, 2), 12)
        for blk in dec.blocks:
            x = blk(x)
        torch.testing.assert_close(dec(latent, pm.ids_restore, (4, 3, 2)), dec.pred(dec.norm(x)), rtol=1e-5, atol=1e-5)


def test_unet_decoder_last_block_has_half_the_finest_channels():
    dec = UNetDecoder([8, 6, 4], out_channels=2, spatial_dims=3, channels=[10, 6])
    assert dec.out.in_channels == 5 and dec.out.out_channels == 2  # documented: half the finest level's 10


def test_projection_head_defaults_are_the_documented_method_defaults():
    """``ProjectionHead(in_dim)`` alone builds the default config's head (docs/training.md: hidden 512, out 128)."""
    from medssl.config import MethodConfig

    head = ProjectionHead(16)
    assert (head[0].in_features, head[0].out_features, head[3].out_features) == (16, 512, 128)
    assert (MethodConfig().proj_hidden_dim, MethodConfig().proj_dim) == (512, 128)


def test_unet_decoder_levels_are_two_conv_bn_relu_layers_at_each_skips_size():
    """Ronneberger et al.: each level is two 3x3 conv-BN-ReLU layers; default channels are the skips' (coarse to
    fine 6, 4 for skips 4, 6, 8), the last block runs at the input size with half the finest channels."""
    dec = UNetDecoder([4, 6, 8], out_channels=1, spatial_dims=2).eval()
    for block in [*dec.levels, dec.final]:
        assert [type(m).__name__ for m in block] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2
        assert {m.kernel_size for m in block if isinstance(m, torch.nn.Conv2d)} == {(3, 3)}
    assert [b[3].out_channels for b in dec.levels] + [dec.final[3].out_channels] == [6, 4, 2]
    seen = []
    for block in [*dec.levels, dec.final]:
        block.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape[1:])))
    maps = [torch.randn(1, 4, 16, 16), torch.randn(1, 6, 8, 8), torch.randn(1, 8, 4, 4)]
    with torch.no_grad():
        dec(maps, (32, 32))
    assert seen == [(14, 8, 8), (10, 16, 16), (4, 32, 32)]


def test_unet_decoder_upsampling_is_linear_with_half_voxel_centres():
    """Each axis resampled linearly, output sample i at input coordinate (i + 0.5) n / size - 0.5 clamped to the
    ends (align_corners=False), written with np.interp."""
    import numpy as np

    dec = UNetDecoder([2, 2], out_channels=1, spatial_dims=2)
    x = torch.randn(1, 2, 4, 3)
    expected = x.numpy()
    for axis, size in ((2, 8), (3, 7)):
        n = expected.shape[axis]
        coords = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
        expected = np.apply_along_axis(lambda v: np.interp(coords, np.arange(n), v), axis, expected)
    np.testing.assert_allclose(dec._up(x, (8, 7)).numpy(), expected, atol=1e-6)


def test_mae_decoder_blocks_have_the_papers_parameter_count():
    """Per block of width D with MLP hidden m = mlp_ratio D and qkv bias (MAE's decoder blocks): qkv 3D^2 + 3D,
    projection D^2 + D, MLP 2Dm + m + D, two LayerNorms 4D; then a final LayerNorm (2D)."""
    d, m = 12, 24
    dec = MAEDecoder(encoder_dim=10, patch_dim=7, dim=d, depth=2, num_heads=2, mlp_ratio=2.0)
    trainable = sum(p.numel() for p in dec.blocks.parameters() if p.requires_grad)
    assert trainable == 2 * (4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d)
    assert sum(p.numel() for p in dec.norm.parameters()) == 2 * d


def test_mae_decoder_mask_token_starts_as_the_papers_small_gaussian():
    """MAE's reference code draws the mask token from N(0, 0.02²) (not zeros, not unit variance)."""
    torch.manual_seed(0)
    token = MAEDecoder(encoder_dim=8, patch_dim=4, dim=512, depth=0, num_heads=8).mask_token.detach()
    assert 0.017 < float(token.std()) < 0.023 and abs(float(token.mean())) < 0.003
