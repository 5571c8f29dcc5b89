"""MAE (He et al., CVPR 2022): loss on masked patches only, encoder sees visible patches only,
decoder position embeddings, reconstruction images, and a few training steps in 2D and 3D."""

import math

import numpy as np
import pytest
import torch
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding

from medssl.encoders import build_encoder
from medssl.heads.decoders import sincos_position_embedding
from medssl.methods.mae import MAE, masked_patch_mse, normalise_patches
from medssl.transforms.masking import patchify, unpatchify

VIT = {"img_size": 16, "patch_size": 4, "hidden_size": 48, "num_layers": 2, "num_heads": 2}
DECODER = {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2}


def make_mae(dims: int = 3, **kw) -> MAE:
    torch.manual_seed(0)
    return MAE(build_encoder("vit_tiny", spatial_dims=dims, in_channels=1, **VIT), **DECODER, **kw)


def naive_loss(pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, patch: int, norm: bool) -> float:
    """The paper's loss written out patch by patch with numpy (masked patches only)."""
    nd = x.ndim - 2
    grid = [s // patch for s in x.shape[2:]]
    total, count = 0.0, 0
    for b in range(x.shape[0]):
        for idx, cell in enumerate(np.ndindex(*grid)):  # row-major, last axis fastest
            if mask[b, idx] == 0:
                continue
            sl = tuple(slice(c * patch, (c + 1) * patch) for c in cell)
            target = x[b, 0][sl].numpy().ravel()  # one channel: voxel order within a patch is row-major too
            if norm:
                target = (target - target.mean()) / math.sqrt(target.var(ddof=1) + 1e-6)
            total += float(((pred[b, idx].numpy() - target) ** 2).mean())
            count += 1
    assert count == mask.sum() and nd in (2, 3)
    return total / count


@pytest.mark.parametrize("norm", [False, True])
def test_loss_is_the_paper_formula_on_masked_patches(norm):
    mae = make_mae(norm_pix_loss=norm)
    x = torch.randn(2, 1, 16, 16, 16)
    out = mae.training_step({"image": x}, torch.Generator().manual_seed(5))
    with torch.no_grad():
        pred, pm, _ = mae.forward_masked(x, torch.Generator().manual_seed(5))
    assert pm.mask.sum() == 2 * (64 - 16)  # ratio 0.75 of 4³ patches
    assert out.loss.item() == pytest.approx(naive_loss(pred, x, pm.mask, 4, norm), rel=1e-4)


def test_loss_ignores_visible_patch_targets():
    mae = make_mae()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        pred, pm, _ = mae.forward_masked(x, torch.Generator().manual_seed(1))
    target = mae.targets(x)
    changed = target + 10.0 * (1 - pm.mask)[..., None] * torch.randn_like(target)  # visible patches only
    assert torch.equal(masked_patch_mse(pred, changed, pm.mask), masked_patch_mse(pred, target, pm.mask))
    worse = target + pm.mask[..., None]  # masked patches changed: the loss moves
    assert masked_patch_mse(pred, worse, pm.mask) != masked_patch_mse(pred, target, pm.mask)


def test_encoder_sees_only_visible_patches():
    mae = make_mae().eval()
    lengths = []
    mae.encoder.net.blocks[0].register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1]))
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        pred_a, pm, _ = mae.forward_masked(x, torch.Generator().manual_seed(3))
        assert lengths == [16]  # int(64 · 0.25) visible tokens enter the transformer
        patches = patchify(x, 4)
        noise = torch.randn_like(patches) * pm.mask[..., None]  # change the masked patches' voxels only
        pred_b, pm_b, _ = mae.forward_masked(unpatchify(patches + noise, 4, (16, 16, 16), 1),
                                             torch.Generator().manual_seed(3))
    assert torch.equal(pm.mask, pm_b.mask) and torch.equal(pred_a, pred_b)


def test_normalised_targets_and_decoder_positions():
    p = torch.randn(3, 5, 64) * 4 + 2
    n = normalise_patches(p)
    assert torch.allclose(n.mean(-1), torch.zeros(3, 5), atol=1e-5)
    assert torch.allclose(n.std(-1), torch.ones(3, 5), atol=1e-4)
    for grid, dim in (([3, 4, 5], 48), ([6, 7], 32)):  # same as MONAI's builder where it applies
        assert torch.equal(sincos_position_embedding(grid, dim), build_sincos_position_embedding(grid, dim, len(grid)))
    odd = sincos_position_embedding([2, 3, 4], 50)  # any width: leftover channels are zero
    assert odd.shape == (1, 24, 50) and not odd[..., 48:].any() and odd[..., :48].abs().sum() > 0


def test_reconstruction_keeps_visible_patches():
    mae = make_mae(dims=2, norm_pix_loss=True).eval()
    x = torch.randn(2, 1, 16, 16)
    rec = mae.reconstruct(x, torch.Generator().manual_seed(0))
    visible = rec["mask"] == 0
    assert rec["mask"].mean().item() == pytest.approx(0.75)
    assert torch.allclose(rec["reconstruction"][visible], x[visible])
    assert torch.equal(rec["masked"][~visible], torch.zeros_like(x[~visible]))


@pytest.mark.parametrize("dims", [2, 3])
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(dims):
    mae = make_mae(dims=dims, norm_pix_loss=False)
    x = torch.randn(4, 1, *[16] * dims, generator=torch.Generator().manual_seed(1)).cumsum(-1) / 4  # ramps
    opt = torch.optim.AdamW(mae.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        out = mae.training_step({"image": x}, torch.Generator().manual_seed(0))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.75 * losses[0], losses


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs a ViT encoder"):
        MAE(build_encoder("resnet10", width=4))
    with pytest.raises(ValueError, match="mask_ratio"):
        make_mae(mask_ratio=0.0)
    from medssl.transforms.views import build_view_pipeline

    with pytest.raises(ValueError, match="divisible by patch_size"):  # used alone, without a config
        make_mae(views=build_view_pipeline("none", 3, (14, 16, 16)))


def test_built_from_config_with_views_from_the_augment_section():
    from medssl.api import build_method
    from medssl.config import ConfigError, load_config

    base = ["encoder.name=vit_tiny", "method.name=mae", "data.shape=[24,24,24]", "augment.preset=none",
            "augment.crop_size=[16,16,16]", "encoder.options={img_size: 16, patch_size: 8, hidden_size: 48, "
            "num_layers: 1, num_heads: 2}", "method.options={mask_ratio: 0.5, decoder_dim: 32, decoder_depth: 1, "
            "decoder_heads: 2}"]
    mae = build_method(load_config(None, base))
    assert isinstance(mae, MAE) and mae.mask_ratio == 0.5 and mae.views.crop_size == (16, 16, 16)
    out = mae.training_step({"image": torch.randn(2, 1, 24, 24, 24)}, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss) and set(out.logs) == {"mse_masked"}
    with pytest.raises(ConfigError, match="method.options.mask_ration.*mask_ratio"):
        load_config(None, base + ["method.options.mask_ration=0.5"])
    with pytest.raises(ConfigError, match="views are built from the augment section"):
        build_method(load_config(None, base + ["method.options.views=1"]))
    with pytest.raises(ConfigError, match=r"augment.crop_size=\[12, 16, 16\] is not a multiple of .*patch_size"):
        load_config(None, base + ["augment.crop_size=[12,16,16]"])  # refused with the config, before any step


def test_reconstruction_of_a_perfect_normalised_prediction_is_the_input(monkeypatch):
    """With norm_pix_loss the decoder predicts per-patch normalised voxels; a prediction equal to the
    normalised target must be mapped back to the input itself (round trip through each patch's mean/std). The std
    is sqrt(var + 1e-6), the target's own: on patches of variance ~1e-6 a plain sqrt(var) is off by ~30 %."""
    mae = make_mae(dims=2, norm_pix_loss=True).eval()
    real = mae.forward_masked

    def perfect(inp, generator):
        _, pm, grid = real(inp, generator)
        return mae.targets(inp), pm, grid

    monkeypatch.setattr(mae, "forward_masked", perfect)
    for scale, atol in ((3.0, 1e-4), (1e-3, 2e-5)):
        x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * scale + 5
        rec = mae.reconstruct(x, torch.Generator().manual_seed(0))
        assert rec["mask"].mean().item() == pytest.approx(0.75)
        assert torch.allclose(rec["reconstruction"], x, atol=atol), scale


def test_mask_ratio_is_the_one_configured():
    mae = make_mae(mask_ratio=0.5)
    with torch.no_grad():
        _, pm, _ = mae.forward_masked(torch.randn(2, 1, 16, 16, 16), torch.Generator().manual_seed(0))
    assert torch.equal(pm.mask.sum(1), torch.tensor([32.0, 32.0]))  # half of the 4³ patches


def test_normalised_targets_of_low_variance_and_constant_patches():
    """The MAE code's target ``(p - mean) / sqrt(var + 1e-6)`` (unbiased var), written out with numpy on patches
    whose variance is of the order of eps, where eps matters; a constant patch gives zeros, not NaN."""
    rng = np.random.default_rng(0)
    p = 3.0 + 1e-3 * rng.standard_normal((2, 3, 64))
    p[1, 2] = 7.0
    expected = (p - p.mean(-1, keepdims=True)) / np.sqrt(p.var(-1, ddof=1, keepdims=True) + 1e-6)
    out = normalise_patches(torch.tensor(p))
    assert torch.isfinite(out).all() and not out[1, 2].any()
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_masked_loss_with_no_masked_patch_is_zero_not_nan():
    """The limit of mask ratio 0: no masked patch, nothing to reconstruct: the loss is 0 (and finite)."""
    pred, target = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    loss = masked_patch_mse(pred, target, torch.zeros(2, 5))
    assert torch.isfinite(loss) and loss.item() == 0.0
    one = torch.zeros(2, 5)
    one[1, 3] = 1.0  # a single masked patch: its own mean squared error
    assert masked_patch_mse(pred, target, one).item() == pytest.approx(((pred[1, 3] - target[1, 3]) ** 2).mean().item())


def test_defaults_are_the_papers():
    """He et al.'s setting, as the docstring says: mask ratio 0.75, per-patch normalised targets, decoder 512 wide,
    8 blocks, 16 heads; a mask ratio of 1 (nothing visible to the encoder) is refused when the method is built."""
    torch.manual_seed(0)
    decoder = MAE(build_encoder("vit_tiny", spatial_dims=3, in_channels=1, **VIT)).decoder
    assert len(decoder.blocks) == 8 and decoder.embed.out_features == 512 and decoder.blocks[0].attn.num_heads == 16
    mae = make_mae()  # a small decoder, the other defaults
    x = torch.randn(2, 1, 16, 16, 16)
    out = mae.training_step({"image": x}, torch.Generator().manual_seed(2))
    with torch.no_grad():
        pred, pm, _ = mae.forward_masked(x, torch.Generator().manual_seed(2))
    assert torch.equal(pm.mask.sum(1), torch.tensor([48.0, 48.0]))
    assert out.loss.item() == pytest.approx(naive_loss(pred, x, pm.mask, 4, norm=True), rel=1e-4)
    with pytest.raises(ValueError, match="mask_ratio"):
        make_mae(mask_ratio=1.0)


def test_the_loss_is_computed_on_the_views_of_the_batch():
    """With views, the masked patches and the targets are those of the augmented batch (a 16³ crop of 24³ inputs),
    drawn from the same generator: the loss is the paper's formula on the view."""
    from medssl.transforms.views import build_view_pipeline

    mae = make_mae(views=build_view_pipeline("none", 3, (16, 16, 16)), norm_pix_loss=True)
    x = torch.randn(2, 1, 24, 24, 24)
    loss = mae.training_step({"image": x}, torch.Generator().manual_seed(4)).loss
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        view = mae.views(x, g)
        pred, pm, _ = mae.forward_masked(view, g)
    assert view.shape == (2, 1, 16, 16, 16) and not torch.equal(view, x[:, :, :16, :16, :16])
    assert loss.item() == pytest.approx(naive_loss(pred, view, pm.mask, 4, norm=True), rel=1e-4)


@pytest.mark.filterwarnings(r"ignore:var\(\). degrees of freedom:UserWarning")
def test_normalised_targets_of_one_voxel_patches_are_refused_early():
    """A one-value patch (patch_size 1, one channel) has no unbiased variance: its normalised target is
    0/0 = NaN, and so would be the loss. Refused by the config check (before any data is prepared) and by
    the constructor used alone, naming the keys; raw targets and several channels stay allowed."""
    from medssl.config import ConfigError, load_config

    one = {**VIT, "img_size": 4, "patch_size": 1}
    assert torch.isnan(normalise_patches(torch.randn(1, 3, 1))).all()  # the symptom the check prevents
    with pytest.raises(ValueError, match=r"method.options.norm_pix_loss.*encoder.options.patch_size"):
        MAE(build_encoder("vit_tiny", spatial_dims=2, in_channels=1, **one), **DECODER)
    MAE(build_encoder("vit_tiny", spatial_dims=2, in_channels=1, **one), norm_pix_loss=False, **DECODER)
    MAE(build_encoder("vit_tiny", spatial_dims=2, in_channels=2, **one), **DECODER)  # 2 values per patch
    base = ["encoder.name=vit_tiny", "method.name=mae", "encoder.spatial_dims=2", "data.shape=[8,8]",
            "augment.preset=none", "augment.crop_size=[4,4]", "encoder.options={img_size: 4, patch_size: 1, "
            "hidden_size: 48, num_layers: 1, num_heads: 2}"]
    with pytest.raises(ConfigError, match=r"norm_pix_loss.*patch_size \[1, 1\].*in_channels 1.*NaN"):
        load_config(None, base)
    load_config(None, base + ["method.options={norm_pix_loss: false}"])
    load_config(None, base + ["encoder.in_channels=2"])


def test_a_generator_on_another_device_than_the_batch_is_refused_before_the_encoder_runs():
    """The mask is drawn on the batch's device with the step's generator: a CPU generator with a batch elsewhere
    is the masking's clear error ('meta' device: no GPU needed), not a device mismatch inside the encoder."""
    mae = make_mae()
    with pytest.raises(ValueError, match="Generator lives on cpu but the batch is on meta"):
        mae.forward_masked(torch.zeros(1, 1, 16, 16, 16, device="meta"), torch.Generator().manual_seed(0))
