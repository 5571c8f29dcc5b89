"""MedMNIST .npz -> records: label dtype/shape, subject ids, split mapping, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.data.card import DataCard
from medssl.data.manifest import ManifestError
from medssl.data.medmnist_records import medmnist_labels, medmnist_records


def _card(npz="set.npz", splits=None):
    return DataCard(name="m", modality="CT", dimensionality=2, format="medmnist", npz=npz, splits=splits or {})


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
