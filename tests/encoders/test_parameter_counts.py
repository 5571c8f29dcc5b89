"""The CNN encoders against their papers' architectures, counted by hand: parameter counts written out layer by
layer (He et al. 2016, Huang et al. 2017, Abrol et al. 2021) for every registered depth and option, anchored on
the published ImageNet sizes, and the known limit that the 2D and 3D versions of one encoder differ only by
the kernel volume of each convolution."""

import pytest
import torch

from medssl.encoders import build_encoder
from medssl.registry import list_encoders

RESNETS = {"resnet10": ("basic", [1, 1, 1, 1]), "resnet18": ("basic", [2, 2, 2, 2]),
           "resnet34": ("basic", [3, 4, 6, 3]), "resnet50": ("bottleneck", [3, 4, 6, 3])}
DENSENETS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32), "densenet201": (6, 12, 48, 32)}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def resnet_count(block: str, layers: list[int], dims: int, c_in: int, w: int, stem: int = 7, shortcut_bias=True):
    """He et al. 2016: stem conv (no bias) + BN, then four stages of planes (w, 2w, 4w, 8w), the first block of
    stages 2-4 with stride 2; basic blocks 3-3, bottlenecks 1-3-1 with expansion 4; a 1x1 conv + BN shortcut
    (option B) where the shape changes. BatchNorm has 2 parameters per channel. MONAI's shortcut convolution
    keeps its bias (``shortcut_bias``), which torchvision's does not."""
    k3 = 3 ** dims
    total, c = stem ** dims * c_in * w + 2 * w, w
    for i, n in enumerate(layers):
        planes = w * 2 ** i
        out = planes * (4 if block == "bottleneck" else 1)
        for j in range(n):
            if block == "basic":
                total += k3 * c * planes + 2 * planes + k3 * planes * planes + 2 * planes
            else:
                total += c * planes + 2 * planes + k3 * planes * planes + 2 * planes + planes * out + 2 * out
            if j == 0 and (i > 0 or c != out):
                total += c * out + (out if shortcut_bias else 0) + 2 * out
            c = out
    return total


def densenet_count(blocks, dims: int, c_in: int, k: int, bn_size: int = 4) -> int:
    """Huang et al. 2017: stem 7^d conv (2k channels) + BN; dense layers BN-ReLU-1x1 conv (bn_size*k)-BN-ReLU-3^d
    conv (k), no conv biases; transitions BN-ReLU-1x1 conv halving the channels; a final BN."""
    total, c = 7 ** dims * c_in * 2 * k + 2 * 2 * k, 2 * k
    for i, n in enumerate(blocks):
        for _ in range(n):
            total += 2 * c + c * bn_size * k + 2 * bn_size * k + 3 ** dims * bn_size * k * k
            c += k
        if i < len(blocks) - 1:
            total += 2 * c + c * (c // 2)
            c //= 2
    return total + 2 * c


def test_the_hand_counts_give_the_published_imagenet_sizes():
    """torchvision's ResNet-18/34/50 and DenseNet-121/169/201 (3 input channels) less their 1000-class
    classifier: 11 689 512 - 513 000, 21 797 672 - 513 000, 25 557 032 - 2 049 000, 7 978 856 - 1 025 000,
    14 149 480 - 1 665 000 and 20 013 928 - 1 921 000."""
    assert resnet_count("basic", [2, 2, 2, 2], 2, 3, 64, shortcut_bias=False) == 11_176_512
    assert resnet_count("basic", [3, 4, 6, 3], 2, 3, 64, shortcut_bias=False) == 21_284_672
    assert resnet_count("bottleneck", [3, 4, 6, 3], 2, 3, 64, shortcut_bias=False) == 23_508_032
    expected = {"densenet121": 6_953_856, "densenet169": 12_484_480, "densenet201": 18_092_928}
    assert {name: densenet_count(b, 2, 3, 32) for name, b in DENSENETS.items()} == expected


def test_resnet18_with_the_documented_defaults_is_the_papers_network():
    """The registry's defaults (width 64, 7x7/2 stem, max-pool) give ResNet-18's 11.18M parameters and the
    paper's strides: stem /2, layer1 /4, ... layer4 /32."""
    enc = build_encoder("resnet18", spatial_dims=2, in_channels=3).eval()
    assert n_params(enc) == resnet_count("basic", [2, 2, 2, 2], 2, 3, 64) == 11_176_512 + 128 + 256 + 512
    assert enc.out_dim == 512
    small = build_encoder("resnet10", spatial_dims=2, width=2).eval()
    with torch.no_grad():
        maps = small.forward_pyramid(torch.randn(1, 1, 64, 64))
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2]


@pytest.mark.parametrize("name", sorted(RESNETS))
@pytest.mark.parametrize("dims", [2, 3])
def test_every_resnet_depth_has_the_papers_blocks(name, dims):
    block, layers = RESNETS[name]
    enc = build_encoder(name, spatial_dims=dims, in_channels=2, width=4, conv1_kernel=3)
    assert n_params(enc) == resnet_count(block, layers, dims, 2, 4, stem=3)
    assert enc.out_dim == 8 * 4 * (4 if block == "bottleneck" else 1)


@pytest.mark.parametrize("name", sorted(DENSENETS))
@pytest.mark.parametrize("dims", [2, 3])
def test_every_densenet_depth_has_the_papers_blocks(name, dims):
    enc = build_encoder(name, spatial_dims=dims, in_channels=2, width=2, bn_size=2)
    assert n_params(enc) == densenet_count(DENSENETS[name], dims, 2, 2, bn_size=2)


def test_alexnet_parameters_follow_the_layer_table():
    """Five convolutions (with bias) of 5, 3, 3, 3, 3 voxels and w, 2w, 3w, 3w, 2w channels, each with a BN."""
    for dims in (2, 3):
        enc = build_encoder("alexnet", spatial_dims=dims, in_channels=2, width=4)
        chans, expected = [2, 4, 8, 12, 12, 8], 0
        for kernel, c_in, c_out in zip((5, 3, 3, 3, 3), chans, chans[1:]):
            expected += kernel ** dims * c_in * c_out + c_out + 2 * c_out
        assert n_params(enc) == expected


@pytest.mark.parametrize("name", [n for n in list_encoders() if not n.startswith("vit")])
def test_2d_and_3d_versions_differ_only_by_the_kernel_volume(name):
    """Known limit: the same network in 3D has each convolution weight k times larger (k the kernel side) and
    every other parameter (biases, norms) the same; a layer left 2D (or 3D) in the other version, or a norm
    without affine weights, breaks it."""
    options = {"width": 2} if not name.startswith("resnet") else {"width": 2, "conv1_kernel": 3}
    p2 = dict(build_encoder(name, spatial_dims=2, **options).named_parameters())
    p3 = dict(build_encoder(name, spatial_dims=3, **options).named_parameters())
    assert p2.keys() == p3.keys()
    for key, w2 in p2.items():
        w3 = p3[key]
        if w2.ndim == 4:  # convolution weight (out, in, k, k) vs (out, in, k, k, k)
            assert w3.shape == (*w2.shape, w2.shape[-1]), key
        else:
            assert w3.shape == w2.shape, key


def test_alexnet_needs_69_voxels_per_side():
    """floor((n - 5)/2) + 1, then /3, -2, /3, /3 (3/3 pools, valid 3-conv, two padded convs): 69 leaves 1 voxel,
    68 leaves none, and is refused with the documented message instead of a pooling error."""
    enc = build_encoder("alexnet", spatial_dims=2, width=2).eval()
    with torch.no_grad():
        assert enc.forward_features(torch.randn(1, 1, 69, 69)).shape == (1, 4, 1, 1)
        with pytest.raises(ValueError, match="at least 69 voxels"):
            enc(torch.randn(1, 1, 68, 69))


def test_densenet_dropout_acts_in_training_only():
    """``dropout`` reaches the dense layers: two training passes differ, two eval passes are identical."""
    from medssl.encoders.densenet import DenseNetEncoder

    torch.manual_seed(0)
    enc = DenseNetEncoder(block_config=(2, 2), spatial_dims=2, width=2, dropout=0.5)
    x = torch.randn(2, 1, 8, 8)
    assert not torch.equal(enc.train()(x), enc(x))
    with torch.no_grad():
        assert torch.equal(enc.eval()(x), enc(x))
