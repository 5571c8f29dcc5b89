"""The documented architecture options act on the network: stem stride / kernel / max-pool of
the ResNets (checked through the strides of the pyramid and the receptive field of one voxel)
and the ViT sizes (checked against the parameter count of the paper's transformer block)."""

import pytest
import torch

from medssl.encoders import build_encoder


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("stride, no_max_pool, strides", [(2, False, (2, 4, 8, 16, 32)), (1, True, (1, 1, 2, 4, 8)),
                                                          (1, False, (1, 2, 4, 8, 16)), (2, True, (2, 2, 4, 8, 16))])
def test_resnet_pyramid_has_the_documented_strides(dims, stride, no_max_pool, strides):
    """Docstring: stem /2, layer1 /4, layer2 /8, layer3 /16, layer4 /32 with the paper's stem; conv1_stride=1
    removes the stem's /2, no_max_pool the max-pool's /2 (the sizes of a 32-voxel input are 32 / stride)."""
    enc = build_encoder("resnet10", spatial_dims=dims, width=2, conv1_stride=stride, no_max_pool=no_max_pool).eval()
    with torch.no_grad():
        maps = enc.forward_pyramid(torch.randn(1, 1, *[32] * dims))
    assert [tuple(m.shape[2:]) for m in maps] == [(32 // s,) * dims for s in strides]


@pytest.mark.parametrize("kernel, stride, reached", [(7, 2, [15, 16, 17]), (3, 2, [16]), (7, 1, list(range(29, 36))),
                                                     (3, 1, [31, 32, 33])])
def test_resnet_stem_kernel_and_stride_set_which_outputs_one_voxel_reaches(kernel, stride, reached):
    """A change of input voxel 32 (of 64) changes stem output i exactly where the stem's window covers it:
    |stride * i - 32| <= kernel // 2 (padding kernel // 2), the naive receptive field of one convolution.
    The stem level is rectified, so a change of one sign can leave a covered output at 0 in both channels (it did
    for 12 of 100 random initialisations of the 3 x 3 / 2 stem): both signs are tried, on a fixed seed."""
    torch.manual_seed(0)
    enc = build_encoder("resnet10", spatial_dims=2, width=2, conv1_kernel=kernel, conv1_stride=stride).eval()
    x = torch.randn(1, 1, 64, 8)
    diff = torch.zeros(64 // stride)
    with torch.no_grad():
        base = enc.forward_pyramid(x)[0]
        for change in (1e3, -1e3):
            y = x.clone()
            y[0, 0, 32, 4] += change
            diff = torch.maximum(diff, (enc.forward_pyramid(y)[0] - base).abs().amax(dim=(0, 1, 3)))
    assert torch.nonzero(diff > 1e-6).flatten().tolist() == reached


@pytest.mark.parametrize("name, dims", [("vit_tiny", 3), ("vit_small", 3), ("vit_base", 2)])
def test_vit_sizes_give_the_papers_parameter_count(name, dims):
    """Per transformer block of width D with MLP 4·D and qkv bias (ViT / MAE): qkv 3D² + 3D, projection D² + D,
    MLP 8D² + 5D, two LayerNorms 4D, i.e. 12D² + 13D; ViT-S has 12 blocks of D = 384, ViT-B 12 of D = 768 (the
    ~86M parameters of ViT-B/16 less its patch embedding and head), DeiT's ViT-Ti 12 of D = 192. Only trainable
    parameters count (MONAI's unused cross-attention norm is frozen)."""
    enc = build_encoder(name, spatial_dims=dims, img_size=32, patch_size=16)
    d, layers = {"vit_tiny": (192, 12), "vit_small": (384, 12), "vit_base": (768, 12)}[name]
    blocks = sum(p.numel() for p in enc.net.blocks.parameters() if p.requires_grad)
    assert blocks == layers * (12 * d * d + 13 * d)
    assert enc.out_dim == d and len(enc.net.blocks) == layers
    heads = {b.attn.num_heads for b in enc.net.blocks}
    assert heads == {d // 64}  # head width 64 in ViT-Ti, ViT-S and ViT-B (3, 6, 12 heads)


@pytest.mark.parametrize("dims", [2, 3])
def test_resnet_for_small_inputs_matches_plain_monai_and_its_maps_are_rectified(dims):
    """The small-input stem (stride 1, no max-pool, as for 28³ MedMNIST) gives the plain MONAI ResNet's
    embedding; there the stem's ReLU is not hidden by a max-pool (max-pool and ReLU commute). Every level of
    the pyramid ends in a ReLU (stem, residual blocks), so every map is non-negative."""
    from monai.networks.nets import ResNet

    torch.manual_seed(0)
    enc = build_encoder("resnet10", spatial_dims=dims, width=2, conv1_kernel=3, conv1_stride=1, no_max_pool=True)
    with torch.no_grad():  # BatchNorm statistics away from their initial (0, 1)
        enc.train()(torch.randn(4, 1, *[12] * dims) + 2)
    enc.eval()
    plain = ResNet(**enc.monai_kwargs()).eval()
    plain.load_state_dict(enc.plain_module().state_dict(), strict=True)
    x = torch.randn(2, 1, *[12] * dims)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), plain(x), rtol=1e-5, atol=1e-6)
        assert all(m.min() >= 0 for m in enc.forward_pyramid(x))


def test_vit_positions_of_a_non_cubic_grid_are_resampled_axis_by_axis():
    """Built for 16 × 24 × 32 (patch grid 2 × 3 × 4), the positions for a 24³ input (grid 3 × 3 × 3) are the
    naive separable linear resampling (half-voxel centres, ends clamped, with np.interp) of the built grid's,
    each axis kept apart (a grid read in the wrong axis order mixes them)."""
    import numpy as np

    enc = build_encoder("vit_small", spatial_dims=3, img_size=(16, 24, 32), patch_size=8, hidden_size=12,
                        num_layers=1, num_heads=2, pos_embed="learnable")
    with torch.no_grad():
        enc.net.patch_embedding.position_embeddings.normal_()
    pos = enc.net.patch_embedding.position_embeddings.detach().numpy().reshape(2, 3, 4, 12)
    expected = pos
    for axis, size in enumerate((3, 3, 3)):
        n = expected.shape[axis]
        coords = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
        expected = np.apply_along_axis(lambda v: np.interp(coords, np.arange(n), v), axis, expected)
    got = enc.position_embeddings((3, 3, 3)).detach().numpy()
    np.testing.assert_allclose(got, expected.reshape(1, 27, 12), atol=1e-5)


@pytest.mark.parametrize("name, side", [("densenet121", 32), ("alexnet", 72), ("resnet10", 32)])
def test_the_stem_level_of_every_cnn_pyramid_is_rectified(name, side):
    """The finest pyramid map (a U-Net decoder's highest-resolution skip, Models Genesis) is the stem after its
    ReLU, as in the papers (conv, BN, ReLU, then pooling). Taking it before the ReLU leaves the embedding unchanged
    (max-pooling and ReLU commute), so only the map itself shows it; for DenseNet it is MONAI's own
    conv0 → norm0 → relu0."""
    torch.manual_seed(0)
    enc = build_encoder(name, spatial_dims=2, width=2).eval()
    x = torch.randn(2, 1, side, side)
    with torch.no_grad():
        maps = enc.forward_pyramid(x)
        assert maps[0].min() >= 0 and maps[0].max() > 0 and maps[-1].min() >= 0
        if name.startswith("densenet"):
            stem = torch.nn.Sequential(*list(enc.net.features.children())[:3])
            assert [type(m).__name__ for m in stem] == ["Conv2d", "BatchNorm2d", "ReLU"]
            torch.testing.assert_close(maps[0], stem(x))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_alexnet_convolutions_are_he_normal_over_the_fan_out(spatial_dims):
    """The docstring's initialisation: std = sqrt(2 / (C_out * k^d)) for every convolution (fan_in would give
    sqrt(2 / (C_in * k^d)): a factor sqrt(C_out / C_in) of 4 on the first layer, 1.4 / 1.2 / 0.8 later)."""
    from medssl.encoders.alexnet import AlexNetEncoder

    torch.manual_seed(0)
    enc = AlexNetEncoder(spatial_dims=spatial_dims, width=16)
    convs = [m for m in enc.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert len(convs) == 5
    for conv in convs:
        c_out, k = conv.weight.shape[0], conv.weight.shape[2]
        expected = (2.0 / (c_out * k ** spatial_dims)) ** 0.5
        assert abs(conv.weight.std().item() / expected - 1) < 0.1, (conv, conv.weight.std().item(), expected)
        assert abs(conv.weight.mean().item()) < 0.1 * expected
