"""MedMNIST .npz: bulk split loading, single-image reads, labels, layouts, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from zip_damage import break_deflate, flip_last_byte

from medssl.io import BadFileError, load_medmnist_split, read_image, read_medmnist
from medssl.io.medmnist import SPLITS

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


def test_single_read_meta_is_plain_python_and_arrays_are_c_contiguous(tmp_path):
    """meta holds Python ints (JSON-safe) and the documented fields; both readers return C-contiguous float32."""
    stored = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)  # (N, D, H, W)
    path = _fake_npz(tmp_path / "m.npz", stored, np.array([[0], [1]], np.uint8))
    vol = read_medmnist(path, "val", np.int64(1))
    assert vol.meta["source_format"] == "medmnist" and vol.meta["split"] == "val"
    assert type(vol.meta["index"]) is int and vol.meta["index"] == 1
    assert type(vol.meta["label"]) is int and vol.meta["label"] == 1
    assert vol.meta["shape"] == (5, 4, 3) and vol.meta["spacing"] == (1.0, 1.0, 1.0)  # (W, H, D), 1 "mm"
    np.testing.assert_array_equal(vol.affine, np.eye(4))
    assert vol.array.flags.c_contiguous
    np.testing.assert_array_equal(vol.array[0], stored[1].transpose(2, 1, 0) / np.float32(255))
    images, _ = load_medmnist_split(path, "val")
    assert images.flags.c_contiguous and images.shape == (2, 1, 5, 4, 3)


def test_negative_index_is_out_of_range_not_counted_from_the_end(tmp_path):
    path = _fake_npz(tmp_path / "g.npz", np.zeros((2, 4, 4), np.uint8), np.zeros((2, 1), np.uint8))
    with pytest.raises(IndexError, match="index -1 is out of range"):
        read_medmnist(path, "train", -1)


def test_missing_file_or_folder_in_read_medmnist(tmp_path):
    with pytest.raises(BadFileError, match=r"gone\.npz: file does not exist"):
        read_medmnist(tmp_path / "gone.npz", "train", 0)
    (tmp_path / "dir.npz").mkdir()
    for load in (lambda p: read_medmnist(p, "train", 0), lambda p: load_medmnist_split(p, "train")):
        with pytest.raises(BadFileError, match=r"dir\.npz: is not a regular file"):
            load(tmp_path / "dir.npz")


def test_cache_sees_a_rewrite_of_the_same_size_or_the_same_time_and_another_folder(tmp_path, monkeypatch):
    """The cache key is (absolute path, mtime, size): a change of any one of them is a new file."""
    import os

    def write(folder, value, n=2, mtime_ns=10**18):
        folder.mkdir(exist_ok=True)
        path = folder / "m.npz"
        np.savez(path, **{f"{s}_{k}": np.full((n, 4, 4) if k == "images" else (n, 1), value, np.uint8)
                          for s in SPLITS for k in ("images", "labels")})  # uncompressed: size depends on n only
        os.utime(path, ns=(mtime_ns, mtime_ns))
        return path

    path = write(tmp_path / "a", 0)
    assert read_medmnist(path, "train", 0).meta["label"] == 0
    size = path.stat().st_size
    write(tmp_path / "a", 1, mtime_ns=2 * 10**18)  # same size, newer
    assert path.stat().st_size == size and read_medmnist(path, "train", 0).meta["label"] == 1
    write(tmp_path / "a", 2, n=3, mtime_ns=2 * 10**18)  # same time, another size
    assert read_medmnist(path, "train", 0).meta["label"] == 2
    write(tmp_path / "b", 3, n=3, mtime_ns=2 * 10**18)  # same relative name, size and time in another folder
    monkeypatch.chdir(tmp_path / "a")
    assert read_medmnist("m.npz", "train", 0).meta["label"] == 2
    monkeypatch.chdir(tmp_path / "b")
    assert read_medmnist("m.npz", "train", 0).meta["label"] == 3


def test_only_a_last_axis_of_3_is_colour(tmp_path):
    """(N, H, 3) is grey 2D of width 3, (N, D, H, 1) a 3D volume of width 1; 5D arrays are refused."""
    grey = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    images, _ = load_medmnist_split(_fake_npz(tmp_path / "g.npz", grey, np.zeros((2, 1), np.uint8)), "test")
    np.testing.assert_array_equal(images[:, 0], grey.transpose(0, 2, 1) / np.float32(255))
    thin = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5, 1)
    images, _ = load_medmnist_split(_fake_npz(tmp_path / "t.npz", thin, np.zeros((2, 1), np.uint8)), "test")
    np.testing.assert_array_equal(images[:, 0], thin.transpose(0, 3, 2, 1) / np.float32(255))
    _fake_npz(tmp_path / "5d.npz", np.zeros((2, 3, 3, 3, 3), np.uint8), np.zeros((2, 1), np.uint8))
    with pytest.raises(BadFileError, match=r"5d\.npz: 'test_images' has shape \(2, 3, 3, 3, 3\)"):
        load_medmnist_split(tmp_path / "5d.npz", "test")


def test_damaged_members_and_missing_arrays_are_bad_files(tmp_path):
    """A .npy under a .npz name, a split without its labels, a bad CRC, an invalid deflate stream: BadFileError."""
    np.save(tmp_path / "a.npy", np.zeros((2, 4, 4), np.uint8))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(BadFileError, match=r"a\.npz: not a \.npz \(zip\) archive"):
        load_medmnist_split(tmp_path / "a.npz", "train")
    np.savez(tmp_path / "i.npz", val_labels=np.zeros((2, 1), np.uint8), train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(BadFileError, match=r"i\.npz: no 'train_images' / 'train_labels' arrays \(keys: "
                                           r"\['train_images', 'val_labels'\]\)"):  # sorted
        load_medmnist_split(tmp_path / "i.npz", "train")
    np.savez(tmp_path / "crc.npz", train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    flip_last_byte(tmp_path / "crc.npz", "train_images.npy", 0xFF)  # last pixel byte: the CRC-32 no longer matches
    with pytest.raises(BadFileError, match=r"crc\.npz: cannot read the \.npz \(BadZipFile: .*CRC"):
        load_medmnist_split(tmp_path / "crc.npz", "train")
    path = _fake_npz(tmp_path / "z.npz", np.zeros((2, 4, 4), np.uint8), np.zeros((2, 1), np.uint8))
    break_deflate(path, "test_images.npy")  # block type 3 (reserved): not a deflate stream
    with pytest.raises(BadFileError, match=r"z\.npz: cannot read the \.npz \(error: .*invalid block type"):
        load_medmnist_split(path, "test")


@pytest.mark.parametrize("labels, words", [
    (np.array([[0.7], [1.0]]), r"'train_labels' holds non-integer values \(float64\)"),  # the int64 cast made 0.7 a 0
    (np.array([[np.nan], [1.0]], np.float32), r"'train_labels' holds non-integer values \(float32\)"),  # and NaN -2**63
    (np.array([[np.inf], [1.0]]), r"'train_labels' holds non-integer values \(float64\)"),
    (np.array([[1 + 1j], [0]]), r"'train_labels' holds non-integer values \(complex128\)"),
    (np.uint8(1), r"'train_labels' is not an array with one row per image"),  # raised a raw IndexError
    (b"raw bytes", r"'train_labels' is not an array with one row per image"),  # a member that is no .npy: bytes
])
def test_labels_that_are_not_class_indices_are_refused(tmp_path, labels, words):
    import zipfile

    path = tmp_path / "l.npz"
    with zipfile.ZipFile(path, "w") as z:  # np.load gives a member that is no .npy as bytes
        z.writestr("train_images.npy", _npy(np.zeros((2, 4, 4), np.uint8)))
        z.writestr("train_labels.npy", labels if isinstance(labels, bytes) else _npy(labels))
        z.writestr("val_images.npy", b"raw bytes")  # images that are no .npy either
        z.writestr("val_labels.npy", _npy(np.zeros((2, 1), np.uint8)))
    with pytest.raises(BadFileError, match=rf"l\.npz: {words}"):
        load_medmnist_split(path, "train")
    with pytest.raises(BadFileError, match=rf"l\.npz: {words}"):
        read_medmnist(path, "train", 0)
    with pytest.raises(BadFileError, match=r"l\.npz: 'val_images' is not a \.npy array"):
        load_medmnist_split(path, "val")
    np.savez(tmp_path / "w.npz", train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.array([[1.0], [0.0]]))
    assert load_medmnist_split(tmp_path / "w.npz", "train")[1].tolist() == [1, 0]  # whole-number floats stay accepted


def _npy(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()
