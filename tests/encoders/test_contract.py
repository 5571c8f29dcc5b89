"""The encoder contract (DESIGN.md §3) for every registered encoder in 2D and 3D."""

import pytest
import torch
from monai.networks.nets import ResNet

from medssl.encoders import build_encoder
from medssl.registry import list_encoders

SMALL = {"width": 4}  # every registered encoder takes a width; keeps the test fast


@pytest.mark.parametrize("name", list_encoders())
@pytest.mark.parametrize("dims", [2, 3])
def test_contract(name, dims):
    torch.manual_seed(0)
    enc = build_encoder(name, spatial_dims=dims, in_channels=2, **SMALL)
    assert (enc.spatial_dims, enc.in_channels) == (dims, 2)
    x = torch.randn(2, 2, *([24] * dims))
    y = enc(x)
    assert y.shape == (2, enc.out_dim) and torch.isfinite(y).all()
    y.square().sum().backward()
    no_grad = [n for n, p in enc.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad
    assert enc.forward_features(x).shape[:2] == (2, enc.out_dim)
    enc.eval()
    with torch.no_grad():
        assert torch.equal(enc(x), enc(x))


def test_resnet_state_dict_loads_strictly_into_plain_monai_network():
    enc = build_encoder("resnet18", spatial_dims=3, in_channels=1, width=8)
    plain = ResNet(**enc.monai_kwargs())
    plain.load_state_dict({k.removeprefix("net."): v for k, v in enc.state_dict().items()}, strict=True)
    x = torch.randn(2, 1, 32, 32, 32)
    enc.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(plain(x), enc(x))


def test_bad_depth_and_unknown_name():
    from medssl.encoders.resnet import ResNetEncoder
    from medssl.registry import UnknownNameError

    with pytest.raises(ValueError, match="depth must be one of"):
        ResNetEncoder(depth=12)
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet50'"):
        build_encoder("resnet05")
