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
    the blocks, the norm and the prediction layer."""
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
    with torch.no_grad():
        torch.testing.assert_close(dec(latent, pm.ids_restore, grid), dec.pred(dec.norm(x)), rtol=1e-5, atol=1e-5)


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
