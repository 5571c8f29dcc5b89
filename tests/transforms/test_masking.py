"""MAE random patch masking (He et al., CVPR 2022 conventions)."""

from __future__ import annotations

import pytest
import torch
from aug_helpers import gen

from medssl.transforms.masking import (RandomPatchMasking, keep_tokens, mask_to_image, patch_grid, patchify,
                                       random_patch_mask, unpatchify)


@pytest.mark.parametrize("num_patches,ratio,keep", [(196, 0.75, 49), (216, 0.75, 54), (64, 0.5, 32), (10, 0.9, 1),
                                                    (50, 0.0, 50), (7, 0.75, 1),
                                                    (100, 0.9, 10), (5, 0.9, 1), (3, 0.5, 1),
                                                    (101, 0.01, 99)])
def test_mask_has_the_requested_ratio(num_patches, ratio, keep):
    pm = random_patch_mask(5, num_patches, ratio, gen(0))
    assert pm.ids_keep.shape == (5, keep) and pm.mask.shape == (5, num_patches)
    assert torch.all(pm.mask.sum(1) == num_patches - keep)
    assert torch.all(pm.mask.gather(1, pm.ids_keep) == 0)


def test_ids_restore_inverts_the_shuffle_like_mae():
    b, n, d = 3, 48, 5
    tokens = torch.randn(b, n, d)
    pm = random_patch_mask(b, n, 0.75, gen(1))
    kept = keep_tokens(tokens, pm.ids_keep)
    mask_tok = torch.zeros(b, n - kept.shape[1], d)
    full = torch.cat([kept, mask_tok], 1).gather(1, pm.ids_restore[..., None].expand(-1, -1, d))
    visible = pm.mask[..., None] == 0
    assert torch.equal(torch.where(visible, full, 0.0), torch.where(visible, tokens, 0.0))
    assert torch.equal(pm.ids_shuffle.gather(1, pm.ids_restore), torch.arange(n).expand(b, n))


def test_masks_are_deterministic_and_vary():
    a, b, c = (random_patch_mask(4, 100, 0.75, gen(s)).mask for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # independent per sample


@pytest.mark.parametrize("shape,patch", [((32, 48), 16), ((16, 24, 8), (8, 8, 4))])
def test_patchify_round_trip_and_patch_content(shape, patch):
    x = torch.randn((2, 3) + shape)
    tok = patchify(x, patch)
    ps = (patch,) * len(shape) if isinstance(patch, int) else patch
    assert tok.shape == (2, int(torch.tensor(patch_grid(shape, patch)).prod()), 3 * int(torch.tensor(ps).prod()))
    assert torch.equal(unpatchify(tok, patch, shape, 3), x)
    first = x[(slice(None), slice(None)) + tuple(slice(0, p) for p in ps)]  # patch 0, channels last
    assert torch.equal(tok[:, 0], first.movedim(1, -1).reshape(2, -1))


def test_mask_to_image_and_module():
    x = torch.randn(2, 1, 32, 32, 32)
    kept, pm = RandomPatchMasking(patch_size=8, mask_ratio=0.75)(x, gen(0))
    assert kept.shape == (2, 16, 512)
    img = mask_to_image(pm.mask, (4, 4, 4), 8)
    assert img.shape == (2, 1, 32, 32, 32) and torch.allclose(img.mean((1, 2, 3, 4)), torch.full((2,), 0.75))
    assert torch.equal(patchify(img, 8)[..., 0], pm.mask)


def test_errors():
    with pytest.raises(ValueError, match="divisible"):
        patchify(torch.zeros(1, 1, 30, 32), 16)
    for shape in ((32, 30), (16, 16, 12)):  # every axis is checked, not only the first
        with pytest.raises(ValueError, match="divisible"):
            patch_grid(shape, 8)
    with pytest.raises(ValueError, match="mask_ratio"):
        random_patch_mask(1, 10, 1.0, gen(0))


def test_mask_to_image_with_anisotropic_patches_puts_each_patch_at_its_place():
    grid, patch = (2, 3, 4), (8, 4, 2)
    mask = random_patch_mask(3, 24, 0.5, gen(2)).mask
    img = mask_to_image(mask, grid, patch)
    assert img.shape == (3, 1, 16, 12, 8)
    for b in range(3):  # naive loop over the row-major patch grid
        for idx, (i, j, k) in enumerate((i, j, k) for i in range(2) for j in range(3) for k in range(4)):
            block = img[b, 0, i * 8:(i + 1) * 8, j * 4:(j + 1) * 4, k * 2:(k + 1) * 2]
            assert torch.all(block == mask[b, idx])


def test_kept_patches_are_in_grid_order_and_the_shuffle_is_kept_then_masked():
    """MAE's conventions written out: ids_keep lists each sample's visible patches in increasing patch index,
    ids_shuffle starts with them and continues with exactly the masked patches."""
    pm = random_patch_mask(4, 40, 0.6, gen(5))
    for b in range(4):
        visible = [i for i in range(40) if pm.mask[b, i] == 0]
        assert pm.ids_keep[b].tolist() == visible
        assert pm.ids_shuffle[b, :16].tolist() == visible
        assert sorted(pm.ids_shuffle[b, 16:].tolist()) == [i for i in range(40) if pm.mask[b, i] == 1]


def test_masks_without_a_generator_differ_between_calls():
    """No generator: fresh randomness each call (a torch.Generator never seeded repeats the same masks)."""
    a, b = (random_patch_mask(2, 64, 0.75).mask for _ in range(2))
    assert not torch.equal(a, b)
    # ...from a generator of its own: the global torch stream (other draws of a run) is left where it was.
    state = torch.get_rng_state()
    random_patch_mask(2, 64, 0.75)
    assert torch.equal(torch.get_rng_state(), state)


def test_masking_module_uses_its_own_ratio_and_refuses_a_full_mask():
    x = torch.randn(3, 1, 16, 16)
    kept, pm = RandomPatchMasking(patch_size=4, mask_ratio=0.25)(x, gen(0))
    assert kept.shape == (3, 12, 16) and torch.equal(pm.mask.sum(1), torch.full((3,), 4.0))
    patches = patchify(x, 4)  # the kept tokens are the input's visible patches
    assert torch.equal(kept, torch.stack([patches[b][pm.mask[b] == 0] for b in range(3)]))
    with pytest.raises(ValueError, match="mask_ratio"):
        RandomPatchMasking(patch_size=4, mask_ratio=1.0)


def test_masks_are_maes_random_masking_of_the_generators_noise():
    """MAE's random_masking written out: noise = rand(B, L) from the generator, ascending argsort, the first
    L_keep (smallest noise) are kept; the same seed gives the paper code's masks (ids_keep then in grid order)."""
    pm = random_patch_mask(3, 30, 0.7, gen(6))
    noise = torch.rand((3, 30), generator=gen(6))
    keep = torch.argsort(noise, dim=1)[:, :9]
    assert torch.equal(pm.ids_keep, keep.sort(1).values)
    expected = torch.ones(3, 30)
    expected.scatter_(1, keep, 0.0)
    assert torch.equal(pm.mask, expected)


def test_defaults_are_maes_ratio_and_a_patch_size_of_the_wrong_length_is_refused():
    """docs/augmentations.md: ``random_patch_mask(B, L, mask_ratio=0.75, ...)``, MAE's 0.75 also for the module;
    a patch size with one entry per axis, never zipped short against the image's axes."""
    assert random_patch_mask(2, 64, generator=gen(0)).mask.sum(1).tolist() == [48.0, 48.0]
    kept, pm = RandomPatchMasking(patch_size=4)(torch.randn(2, 1, 16, 16), gen(0))
    assert kept.shape == (2, 4, 16) and pm.mask.sum(1).tolist() == [12.0, 12.0]
    with pytest.raises(ValueError, match="must have 3 entries"):
        patch_grid((16, 16, 16), (8, 8))
    with pytest.raises(ValueError, match="must have 2 entries"):
        patch_grid((16, 16), (8, 8, 8))
    with pytest.raises(ValueError, match="must have 2 entries"):
        mask_to_image(torch.zeros(1, 4), (2, 2), (4, 4, 4))


def test_a_generator_on_another_device_than_the_batch_is_refused():
    """The masks are drawn on the batch's device with the caller's generator: a CPU generator with a batch
    elsewhere is a clear error (checked on the 'meta' device, so no GPU is needed), not masks on the wrong device."""
    x = torch.zeros(2, 1, 8, 8, device="meta")
    with pytest.raises(ValueError, match="Generator lives on cpu but the batch is on meta"):
        RandomPatchMasking(patch_size=4)(x, gen(0))
    with pytest.raises(ValueError, match="Generator lives on cpu but the batch is on meta"):
        random_patch_mask(2, 4, 0.5, gen(0), device="meta")
