"""MedMNIST .npz: bulk split loading, single-image reads, labels, layouts, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.io import BadFileError, load_medmnist_split, read_image, read_medmnist

PNEU = "medmnist_pneumoniamnist_reconstructed/pneumoniamnist.npz"
ADRENAL = "medmnist_adrenalmnist3d/adrenalmnist3d.npz"


def test_pneumonia_split_shapes_counts_values(shared_data):
    path = shared_data / PNEU
    images, labels = load_medmnist_split(path, "val")
    assert images.shape == (524, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (524,) and np.bincount(labels).tolist() == [135, 389]  # README counts
    with np.load(path) as npz:
        raw = npz["val_images"]
    np.testing.assert_allclose(images[:, 0], raw.transpose(0, 2, 1) / 255.0, atol=1e-7)
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_pneumonia_single_read_equals_bulk(shared_data):
    path = shared_data / PNEU
    images, labels = load_medmnist_split(path, "test")
    for i in (0, 311, 623):
        vol = read_medmnist(path, "test", i)
        np.testing.assert_array_equal(vol.array, images[i])
        assert vol.meta["label"] == labels[i] and vol.meta["split"] == "test" and vol.meta["index"] == i
        assert vol.spatial_dims == 2 and vol.spacing == (1.0, 1.0)
    np.testing.assert_array_equal(read_image(path, split="test", index=5).array, images[5])


def test_adrenal_3d(shared_data):
    path = shared_data / ADRENAL
    images, labels = load_medmnist_split(path, "test")
    assert images.shape == (298, 1, 28, 28, 28) and np.bincount(labels).tolist() == [229, 69]
    assert set(np.unique(images).tolist()) <= {0.0, 1.0}  # binary shape masks (0/255)
    with np.load(path) as npz:
        raw = npz["test_images"][40]  # (D, H, W)
    vol = read_medmnist(path, "test", 40)
    assert vol.spatial_dims == 3
    np.testing.assert_array_equal(vol.array[0], raw.transpose(2, 1, 0) / np.float32(255))
    np.testing.assert_array_equal(vol.array, images[40])


def test_adrenal_3d_64(shared_data):
    """The 64³ file (val split: the smallest): same labels as the 28³ file, binary masks."""
    path = shared_data / ADRENAL.replace(".npz", "_64.npz")
    images, labels = load_medmnist_split(path, "val")
    assert images.shape == (98, 1, 64, 64, 64) and np.bincount(labels).tolist() == [76, 22]  # README counts
    np.testing.assert_array_equal(labels, load_medmnist_split(shared_data / ADRENAL, "val")[1])
    assert set(np.unique(images).tolist()) <= {0.0, 1.0} and images.max() == 1.0
    with np.load(path) as npz:
        raw = npz["val_images"][97]  # (D, H, W)
    vol = read_medmnist(path, "val", 97)
    np.testing.assert_array_equal(vol.array[0], raw.transpose(2, 1, 0) / np.float32(255))
    np.testing.assert_array_equal(vol.array, images[97])
    assert vol.meta["label"] == labels[97] and vol.spacing == (1.0, 1.0, 1.0)


def _fake_npz(path, images, labels):
    np.savez_compressed(path, **{f"{s}_images": images for s in ("train", "val", "test")},
                        **{f"{s}_labels": labels for s in ("train", "val", "test")})
    return path


def test_rgb_and_multilabel_layouts(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(4, 5, 6, 3), dtype=np.uint8)  # (N, H, W, 3)
    labels = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=np.uint8)
    path = _fake_npz(tmp_path / "rgb.npz", rgb, labels)
    images, lab = load_medmnist_split(path, "train")
    assert images.shape == (4, 3, 6, 5) and lab.shape == (4, 3) and lab.dtype == np.int64
    assert images[2, 1, 4, 3] == np.float32(rgb[2, 3, 4, 1] / 255.0)  # green of pixel (row 3, col 4)
    vol = read_medmnist(path, "val", 2)
    assert vol.meta["label"] == (1, 1, 1)
    np.testing.assert_array_equal(vol.array, images[2])


def test_cache_sees_a_rewritten_file(tmp_path):
    path = _fake_npz(tmp_path / "m.npz", np.zeros((2, 4, 4), np.uint8), np.zeros((2, 1), np.uint8))
    assert read_medmnist(path, "train", 1).array.max() == 0.0
    _fake_npz(path, np.full((3, 4, 4), 255, np.uint8), np.ones((3, 1), np.uint8))
    vol = read_medmnist(path, "train", 1)
    assert vol.array.min() == 1.0 and vol.meta["label"] == 1


def test_bad_npz(tmp_path):
    good = _fake_npz(tmp_path / "g.npz", np.zeros((2, 4, 4), np.uint8), np.zeros((2, 1), np.uint8))
    with pytest.raises(IndexError, match=r"g\.npz: index 2 is out of range for split 'val' with 2 images"):
        read_medmnist(good, "val", 2)
    with pytest.raises(ValueError, match="split must be one of"):
        load_medmnist_split(good, "validation")
    np.savez(tmp_path / "k.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(BadFileError, match=r"k\.npz: no 'train_images' / 'train_labels' arrays \(keys: \['images'\]\)"):
        load_medmnist_split(tmp_path / "k.npz", "train")
    _fake_npz(tmp_path / "e.npz", np.zeros((0, 4, 4), np.uint8), np.zeros((0, 1), np.uint8))
    with pytest.raises(BadFileError, match=r"e\.npz: 'test_images' has shape \(0, 4, 4\)"):
        load_medmnist_split(tmp_path / "e.npz", "test")
    _fake_npz(tmp_path / "f.npz", np.zeros((2, 4, 4), np.float64), np.zeros((2, 1), np.uint8))
    with pytest.raises(BadFileError, match="dtype float64"):
        load_medmnist_split(tmp_path / "f.npz", "test")
    _fake_npz(tmp_path / "n.npz", np.zeros((3, 4, 4), np.uint8), np.zeros((2, 1), np.uint8))
    with pytest.raises(BadFileError, match=r"n\.npz: 3 images but 2 labels in split 'test'"):
        load_medmnist_split(tmp_path / "n.npz", "test")
    raw = good.read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BadFileError, match=r"t\.npz: .*(corrupt|truncated)"):
        load_medmnist_split(tmp_path / "t.npz", "train")
    np.savez(tmp_path / "o.npz", train_images=np.array([{"a": 1}, None], dtype=object), train_labels=np.zeros((2, 1)))
    with pytest.raises(BadFileError, match=r"o\.npz: the \.npz holds pickled Python objects, which medssl never loads"):
        load_medmnist_split(tmp_path / "o.npz", "train")
    with pytest.raises(TypeError, match=r"read_medmnist .* needs \['split', 'index'\]"):
        read_image(good)


@pytest.mark.parametrize("field, value, words", [
    (10, 99, "compression method"),  # a compression method zipfile does not know
    (8, 1, "encrypted"),  # the 'encrypted' flag set on a member
])
def test_npz_with_a_damaged_zip_entry_is_a_bad_file(tmp_path, field, value, words):
    """Damage in the zip directory (flags, compression method) is a BadFileError naming the
    file; zipfile raises NotImplementedError / RuntimeError there, not a zip error."""
    raw = bytearray(_fake_npz(tmp_path / "g.npz", np.zeros((2, 4, 4), np.uint8), np.zeros((2, 1), np.uint8)).read_bytes())
    for start in range(len(raw)):  # every central-directory entry: b"PK\1\2", flags at +8, method at +10
        if raw[start:start + 4] == b"PK\x01\x02":
            raw[start + field:start + field + 2] = value.to_bytes(2, "little")
    path = tmp_path / "d.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(BadFileError, match=rf"d\.npz: cannot read the \.npz .*{words}.*corrupt"):
        load_medmnist_split(path, "train")
    with pytest.raises(BadFileError, match=r"d\.npz: "):
        read_medmnist(path, "train", 0)
