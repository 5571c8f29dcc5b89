"""MedMNIST .npz -> records: label dtype/shape, subject ids, split mapping, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from zip_damage import break_deflate, flip_last_byte

from medssl.data.card import DataCard
from medssl.data.manifest import ManifestError, scan_manifest
from medssl.data.medmnist_records import medmnist_labels, medmnist_records


def _card(npz="set.npz", splits=None, obtain=""):
    return DataCard(name="m", modality="CT", dimensionality=2, format="medmnist", npz=npz, splits=splits or {},
                    obtain=obtain)


def test_labels_are_int64_and_squeezed_only_for_single_label(tmp_path, medmnist_file):
    arrays = medmnist_file(tmp_path / "set.npz", sizes=(4, 2, 3))
    y = medmnist_labels(tmp_path / "set.npz", "val")
    assert y.dtype == np.int64 and y.shape == (2,) and y.tolist() == arrays["val_labels"][:, 0].tolist()
    multi = medmnist_file(tmp_path / "multi.npz", sizes=(3, 1, 1), multilabel=14)
    y = medmnist_labels(tmp_path / "multi.npz", "train")
    assert y.dtype == np.int64 and y.shape == (3, 14) and np.array_equal(y, multi["train_labels"])


def test_subject_ids_follow_the_documented_pattern(tmp_path, medmnist_file):
    medmnist_file(tmp_path / "set.npz", sizes=(3, 1, 2))
    recs, _ = medmnist_records(_card(), tmp_path, [])
    assert [r.subject for r in recs] == ["train-000000", "train-000001", "train-000002", "val-000000",
                                         "test-000000", "test-000001"]


def test_card_split_mapping_sets_the_role_and_unmapped_splits_are_reported(tmp_path, medmnist_file):
    medmnist_file(tmp_path / "set.npz", sizes=(3, 2, 4))
    problems = []
    recs, _ = medmnist_records(_card(splits={"train": ["train", "val"], "test": ["test"]}), tmp_path, problems)
    assert [(r.npz_split, r.split) for r in recs] == [("train", "train")] * 3 + [("val", "train")] * 2 + [("test", "test")] * 4
    assert problems == []
    recs, _ = medmnist_records(_card(splits={"train": ["train"], "test": ["test"]}), tmp_path, problems)
    assert [r.npz_split for r in recs] == ["train"] * 3 + ["test"] * 4
    assert len(problems) == 1 and problems[0].where.endswith("[val]") and "2 images are left out" in problems[0].reason


def test_errors_name_the_problem(tmp_path, medmnist_file):
    (tmp_path / "root").mkdir()
    medmnist_file(tmp_path / "outside.npz")
    with pytest.raises(ManifestError, match="escapes the data root"):
        medmnist_records(_card(npz="../outside.npz"), tmp_path / "root", [])
    np.savez(tmp_path / "novel.npz", train_images=np.zeros((1, 2, 2)), train_labels=np.zeros((1, 1)))
    with pytest.raises(ManifestError, match="no 'val_labels' array"):
        medmnist_records(_card(npz="novel.npz"), tmp_path, [])


def test_merged_splits_keep_one_subject_per_image(tmp_path, medmnist_file):
    """With val mapped into train, val's images stay subjects of their own ("val-000000", not a second
    "train-000000"), so no two images share a subject and leak across a subject-level split."""
    medmnist_file(tmp_path / "set.npz", sizes=(3, 2, 1))
    recs, _ = medmnist_records(_card(splits={"train": ["train", "val"], "test": ["test"]}), tmp_path, [])
    assert len({r.subject for r in recs}) == len(recs) == 6
    assert [r.subject for r in recs if r.npz_split == "val"] == ["val-000000", "val-000001"]


def test_record_path_and_scan_source_are_the_normalised_file(tmp_path, medmnist_file):
    medmnist_file(tmp_path / "set.npz", sizes=(1, 1, 1))
    (tmp_path / "sub").mkdir()
    card = _card(npz="sub/../set.npz")
    recs, source = medmnist_records(card, tmp_path, [])
    assert source == str(tmp_path / "set.npz") and {r.path for r in recs} == {str(tmp_path / "set.npz")}
    assert scan_manifest(card, tmp_path).source == str(tmp_path / "set.npz")


def test_a_missing_file_says_how_to_obtain_it(tmp_path):
    with pytest.raises(ManifestError, match=r"absent\.npz does not exist; .*how to obtain it: pip install medmnist"):
        medmnist_records(_card(npz="absent.npz", obtain="pip install medmnist"), tmp_path, [])


def test_damaged_labels_and_a_folder_are_manifest_errors(tmp_path, medmnist_file):
    """An empty file, a bad CRC, an invalid deflate stream, a folder: ManifestError naming the file."""
    (tmp_path / "empty.npz").write_bytes(b"")  # an interrupted download
    with pytest.raises(ManifestError, match=r"empty\.npz: .*re-download it"):
        medmnist_labels(tmp_path / "empty.npz", "train")
    np.savez(tmp_path / "crc.npz", train_labels=np.zeros((4, 1), np.uint8))
    flip_last_byte(tmp_path / "crc.npz", "train_labels.npy", 1)  # last label byte: the CRC-32 no longer matches
    with pytest.raises(ManifestError, match=r"crc\.npz: cannot read the MedMNIST file \(BadZipFile: .*CRC"):
        medmnist_labels(tmp_path / "crc.npz", "train")
    medmnist_file(tmp_path / "z.npz")
    break_deflate(tmp_path / "z.npz", "val_labels.npy")  # block type 3 (reserved): not a deflate stream
    with pytest.raises(ManifestError, match=r"z\.npz: cannot read the MedMNIST file \(error: .*invalid block type"):
        medmnist_labels(tmp_path / "z.npz", "val")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(ManifestError, match=r"dir\.npz: not a \.npz \(zip\) archive"):
        medmnist_labels(tmp_path / "dir.npz", "train")


def test_a_file_that_is_not_a_zip_is_named_so_not_called_pickled(tmp_path):
    """An HTML error page saved by a failed download, or a .npy under a .npz name: "not a .npz (zip) archive",
    as the image reader says (it was "holds pickled Python objects" and a raw TypeError)."""
    (tmp_path / "page.npz").write_text("<html><body>404 Not Found</body></html>")
    np.save(tmp_path / "arr.npy", np.zeros((2, 1), np.uint8))
    (tmp_path / "arr.npy").rename(tmp_path / "arr.npz")
    for name in ("page.npz", "arr.npz"):
        with pytest.raises(ManifestError, match=rf"{name[:-4]}\.npz: not a \.npz \(zip\) archive") as err:
            medmnist_labels(tmp_path / name, "train")
        assert "pickled" not in str(err.value)


def test_an_empty_split_gives_no_records_not_a_reshape_error(tmp_path, medmnist_file):
    medmnist_file(tmp_path / "set.npz", sizes=(3, 0, 2))
    y = medmnist_labels(tmp_path / "set.npz", "val")
    assert y.shape == (0,) and y.dtype == np.int64
    recs, _ = medmnist_records(_card(), tmp_path, [])
    assert [r.subject for r in recs] == ["train-000000", "train-000001", "train-000002", "test-000000", "test-000001"]


@pytest.mark.parametrize("labels", [np.array([[0.7], [1.0]]), np.array([[np.nan], [0.0]]), np.uint8(1)])
def test_labels_that_are_not_class_indices_are_a_manifest_error(tmp_path, labels):
    """0.7 became label "0" and NaN "-9223372036854775808" without a word; a 0-d array raised a raw TypeError."""
    np.savez(tmp_path / "set.npz", train_labels=labels)
    with pytest.raises(ManifestError, match=r"set\.npz: 'train_labels' (holds non-integer values|is not an array)"):
        medmnist_labels(tmp_path / "set.npz", "train")
