"""The encoder contract (DESIGN.md §3) for every registered encoder in 2D and 3D, and the
MONAI compatibility of the wrapped networks (state dicts load strictly into plain MONAI nets)."""

import numpy as np
import pytest
import torch
from monai.networks.nets import DenseNet121, ResNet, ViT
from torch import nn

from medssl.encoders import build_encoder
from medssl.registry import list_encoders

VIT_SMALL = {"img_size": 24, "patch_size": 8, "hidden_size": 48, "num_layers": 2, "num_heads": 2}
#: name prefix → (small options, input side in voxels); every registered encoder must match one
SMALL = {"resnet": ({"width": 4}, 24), "densenet": ({"width": 2}, 32), "alexnet": ({"width": 4}, 72),
         "vit": (VIT_SMALL, 24)}


def small(name: str) -> tuple[dict, int]:
    for prefix, setting in SMALL.items():
        if name.startswith(prefix):
            return setting
    raise AssertionError(f"add small test settings for encoder {name!r} to SMALL in {__file__}")


@pytest.mark.parametrize("name", list_encoders())
@pytest.mark.parametrize("dims", [2, 3])
def test_contract(name, dims):
    options, side = small(name)
    torch.manual_seed(0)
    enc = build_encoder(name, spatial_dims=dims, in_channels=2, **options)
    assert (enc.spatial_dims, enc.in_channels) == (dims, 2)
    x = torch.randn(2, 2, *([side] * dims))
    y = enc(x)
    assert y.shape == (2, enc.out_dim) and torch.isfinite(y).all()
    y.square().sum().backward()
    trainable = [(n, p) for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert not no_grad, no_grad
    feats = enc.forward_features(x)
    if name.startswith("vit"):  # tokens (B, L, D)
        assert feats.shape == (2, (side // 8) ** dims, enc.out_dim)
    else:  # maps (B, D, *S'), and the pyramid matches its declared channels
        assert feats.shape[:2] == (2, enc.out_dim) and feats.ndim == dims + 2
        pyramid = enc.forward_pyramid(x)
        assert [m.shape[1] for m in pyramid] == list(enc.pyramid_channels)
        assert torch.equal(pyramid[-1], feats)
    enc.eval()
    with torch.no_grad():
        assert torch.equal(enc(x), enc(x))


def test_every_encoder_is_listed_with_did_you_mean():
    from medssl.registry import UnknownNameError

    names = list_encoders()
    for expected in ("resnet10", "resnet18", "resnet34", "resnet50", "densenet121", "alexnet", "vit_base"):
        assert expected in names
    with pytest.raises(UnknownNameError, match="Did you mean 'densenet121'"):
        build_encoder("densenet12")


def test_resnet_state_dict_loads_strictly_into_plain_monai_network():
    enc = build_encoder("resnet18", spatial_dims=3, in_channels=1, width=8)
    plain = ResNet(**enc.monai_kwargs())
    plain.load_state_dict({k.removeprefix("net."): v for k, v in enc.state_dict().items()}, strict=True)
    x = torch.randn(2, 1, 32, 32, 32)
    enc.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(plain(x), enc(x), atol=1e-6)


def test_densenet_matches_plain_monai_densenet121():
    enc = build_encoder("densenet121", spatial_dims=2, in_channels=1, width=4).eval()
    plain = DenseNet121(spatial_dims=2, in_channels=1, out_channels=1, init_features=8, growth_rate=4)
    plain.class_layers.out = nn.Identity()  # drop the classifier, as for torchvision's fc
    plain.load_state_dict(enc.plain_module().state_dict(), strict=True)
    plain.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(plain(x), enc(x), atol=1e-5)
    # growth k=4, stem 2k=8: +6k → /2 → +12k → /2 → +24k → /2 → +16k (Huang et al., Table 1)
    assert enc.out_dim == (((8 + 6 * 4) // 2 + 12 * 4) // 2 + 24 * 4) // 2 + 16 * 4 == 128
    assert build_encoder("densenet121", spatial_dims=2).out_dim == 1024  # the paper's DenseNet-121


def test_vit_matches_plain_monai_vit_and_interpolates_positions():
    enc = build_encoder("vit_small", spatial_dims=3, in_channels=1, **VIT_SMALL).eval()
    plain = ViT(**enc.monai_kwargs()).eval()
    plain.load_state_dict(enc.plain_module().state_dict(), strict=True)
    x = torch.randn(2, 1, 24, 24, 24)
    with torch.no_grad():
        tokens, _ = plain(x)
        assert torch.allclose(tokens.mean(1), enc(x), atol=1e-5)
        bigger = enc.forward_features(torch.randn(1, 1, 32, 24, 40))  # other grid: interpolated positions
    assert bigger.shape == (1, 4 * 3 * 5, 48) and torch.isfinite(bigger).all()
    with pytest.raises(ValueError, match="divisible by patch_size"):
        enc(torch.randn(1, 1, 20, 24, 24))
    with pytest.raises(ValueError, match="divisible by 6"):
        build_encoder("vit_tiny", spatial_dims=3, img_size=24, patch_size=8, hidden_size=32, num_heads=2)


def test_alexnet_layers_and_shapes_follow_the_paper():
    enc = build_encoder("alexnet", spatial_dims=3, in_channels=1, width=4).eval()
    kinds = [type(m).__name__ for m in enc.features]
    assert kinds.count("Conv3d") == 5 and kinds.count("BatchNorm3d") == 5 and kinds.count("MaxPool3d") == 3
    convs = [m for m in enc.features if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [4, 8, 12, 12, 8]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [(5, 2, 0), (3, 1, 0), (3, 1, 1), (3, 1, 1),
                                                                              (3, 1, 1)]
    # 1.5 mm MNI input of Abrol et al.: 121 → 59 → 19 → 17 → 5 → 1 and 145 → 71 → 23 → 21 → 7 → 2
    with torch.no_grad():
        assert enc.forward_features(torch.randn(1, 1, 121, 145, 121)).shape == (1, 8, 1, 2, 1)
    with pytest.raises(ValueError, match="at least 69 voxels"):
        enc(torch.randn(1, 1, 64, 80, 80))


@pytest.mark.parametrize("name, options, side", [("resnet10", {"width": 4}, 32), ("vit_tiny", VIT_SMALL, 24),
                                                 ("densenet121", {"width": 2}, 32)])
def test_checkpointing_and_channels_last_do_not_change_results(name, options, side):
    x = torch.randn(4, 1, side, side, side)
    runs = []
    variants = [{}, {"checkpointing": True}] + ([] if name.startswith("vit") else [{"channels_last": True}])
    for extra in variants:
        torch.manual_seed(0)
        enc = build_encoder(name, spatial_dims=3, in_channels=1, **options, **extra)
        out = enc(x)
        out.square().sum().backward()
        runs.append((out.detach(), torch.cat([p.grad.flatten() for p in enc.parameters() if p.requires_grad])))
    (out0, grad0), (out_ckpt, grad_ckpt) = runs[:2]
    assert torch.equal(out_ckpt, out0) and torch.allclose(grad_ckpt, grad0, atol=1e-7)  # same ops, recomputed
    for out, grad in runs[2:]:  # other conv kernels: equal up to float rounding
        assert torch.allclose(out, out0, atol=1e-3, rtol=1e-3)
        assert (grad - grad0).norm() < 1e-3 * grad0.norm()
    if len(variants) == 3:
        conv = next(m for m in enc.modules() if isinstance(m, nn.Conv3d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)


def test_bad_depth_and_unknown_name():
    from medssl.encoders.resnet import ResNetEncoder
    from medssl.registry import UnknownNameError

    with pytest.raises(ValueError, match="depth must be one of"):
        ResNetEncoder(depth=12)
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet50'"):
        build_encoder("resnet05")


@pytest.mark.parametrize("name", list_encoders())
def test_fine_tuning_blocks_cover_every_parameter(name):
    from medssl.eval.finetune import encoder_blocks

    enc = build_encoder(name, spatial_dims=3, **small(name)[0])
    blocks = encoder_blocks(enc)
    assert len(blocks) >= 4
    assert sum(p.numel() for b in blocks for p in b.parameters()) == sum(p.numel() for p in enc.parameters())
    assert all(any(True for _ in b.parameters()) for b in blocks)  # "last k blocks" counts blocks with weights
    if name == "densenet121":  # conv0, norm0, 4 dense blocks, 3 transitions, norm5
        assert len(blocks) == 10


@pytest.mark.parametrize("dims", [2, 3])
def test_densenet_too_small_input_is_refused_with_the_minimum_size(dims):
    """Stem /2, max-pool /2 (ceil), then one 2/2 average pool per transition: four blocks need
    ceil(s/4) >= 2**3, i.e. s >= 29 (a 28³ MedMNIST volume is too small); three blocks s >= 13."""
    enc = build_encoder("densenet121", spatial_dims=dims, in_channels=1, width=2).eval()
    with torch.no_grad():
        assert enc(torch.randn(1, 1, *[29] * dims)).shape == (1, enc.out_dim)
        with pytest.raises(ValueError, match=r"at least 29 voxels per side.*\(28, "):
            enc(torch.randn(1, 1, *[28] + [40] * (dims - 1)))
    from medssl.encoders.densenet import DenseNetEncoder

    three = DenseNetEncoder(block_config=(2, 2, 2), spatial_dims=dims, width=2).eval()
    with torch.no_grad():
        assert three(torch.randn(1, 1, *[13] * dims)).shape == (1, three.out_dim)
        with pytest.raises(ValueError, match="at least 13 voxels per side"):
            three(torch.randn(1, 1, *[12] * dims))


@pytest.mark.parametrize("name", list_encoders())
@pytest.mark.parametrize("dims", [1, 4])
def test_spatial_dims_other_than_2_or_3_are_refused_by_every_encoder(name, dims):
    with pytest.raises(ValueError, match=f"spatial_dims.*2 or 3.*{dims}"):
        build_encoder(name, spatial_dims=dims, **small(name)[0])


def _linear_resize(a: np.ndarray, axis: int, size: int) -> np.ndarray:
    """1D linear resampling along ``axis`` with half-voxel centres (sample i of the output at input coordinate
    (i + 0.5) · n_in / size − 0.5, clamped to the ends), written with ``np.interp``."""
    n = a.shape[axis]
    coords = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    return np.apply_along_axis(lambda v: np.interp(coords, np.arange(n), v), axis, a)


def test_vit_positions_on_another_grid_are_the_separable_linear_resampling_of_the_built_ones():
    enc = build_encoder("vit_small", spatial_dims=3, in_channels=1, **VIT_SMALL).eval()
    pos = enc.net.patch_embedding.position_embeddings.detach().numpy().reshape(3, 3, 3, 48)  # built grid 24 / 8
    expected = pos
    for axis, size in enumerate((4, 3, 5)):
        expected = _linear_resize(expected, axis, size)
    got = enc.position_embeddings((4, 3, 5)).detach().numpy()
    np.testing.assert_allclose(got, expected.reshape(1, 60, 48), atol=1e-6)
    x = torch.randn(1, 1, 32, 24, 40)
    with torch.no_grad():  # the tokens of a 32 x 24 x 40 input carry exactly those positions
        patches = enc.net.patch_embedding.patch_embeddings(x).flatten(2).transpose(1, 2)
        np.testing.assert_allclose(enc.embed(x).numpy(), patches.numpy() + expected.reshape(1, 60, 48), atol=1e-5)


@pytest.mark.parametrize("name", ["resnet10", "densenet121", "alexnet", "vit_tiny"])
def test_a_batch_with_the_wrong_channels_or_axes_is_refused_with_the_expected_shape(name):
    """The encoder names the shape it expects (B, in_channels, *S) instead of failing inside a convolution."""
    options, side = small(name)
    enc = build_encoder(name, spatial_dims=2, in_channels=2, **options).eval()
    with torch.no_grad():
        for bad in (torch.randn(1, 1, side, side), torch.randn(1, 2, side, side, side)):
            with pytest.raises(ValueError, match=r"expects a \(B, 2, \*S\) batch with 2 spatial axes"):
                enc(bad)
