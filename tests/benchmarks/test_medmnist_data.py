"""``benchmarks/medmnist_data.py`` on synthetic files: splits never mix, labels stay with their images (also under
``limit``), the 64³ file of ``adrenal64``, the ``Images`` dataset, and the budgets of the published runs."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmark_module import load_benchmark

DOCS = Path(__file__).resolve().parents[2] / "docs"
SPLIT_MARK = {"train": 10, "val": 20, "test": 30}


def _data():
    return load_benchmark("medmnist_data")


def _write(path: Path, sizes=(40, 12, 16), shape=(28, 28), seed=0) -> None:
    """Each image says where it comes from: first voxel = its split's mark, second = its row, third = its label
    (0 or 255), so a split mixed up or a label moved to another image shows in the loaded arrays."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for (split, mark), n in zip(SPLIT_MARK.items(), sizes):
        labels = rng.integers(0, 2, size=(n, 1), dtype=np.uint8)
        images = np.zeros((n, *shape), np.uint8)
        flat = images.reshape(n, -1)
        flat[:, 0], flat[:, 1], flat[:, 2] = mark, np.arange(n), labels[:, 0] * 255
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def _marks(x: np.ndarray) -> np.ndarray:
    """(N, 3) split mark, row and label of loaded images (medssl's axis order is the reverse of the stored one)."""
    stored = x[:, 0].transpose(0, *range(x.ndim - 2, 0, -1)).reshape(len(x), -1)
    return np.rint(stored[:, :3] * 255).astype(int)


@pytest.mark.parametrize("limit", [0, 7])
def test_splits_never_mix_and_labels_stay_with_their_images(tmp_path, limit):
    _write(tmp_path / "medmnist_pneumoniamnist_reconstructed" / "pneumoniamnist.npz")
    data = _data().load_splits("pneumonia", tmp_path, limit=limit)
    assert list(data) == ["train", "val", "test"]
    for split, (x, y) in data.items():
        assert x.dtype == np.float32 and y.dtype == np.int64 and y.shape == (len(x),)
        assert len(x) == (limit or {"train": 40, "val": 12, "test": 16}[split])
        marks = _marks(x)
        assert (marks[:, 0] == SPLIT_MARK[split]).all(), split  # no image of another split
        assert (marks[:, 2] == 255 * y).all(), split  # each label is its image's
        rows = marks[:, 1]
        assert (np.diff(rows) > 0).all()  # the file's order, no image twice
        if not limit:
            assert rows.tolist() == list(range(len(x)))


def test_adrenal64_reads_the_64_file_of_the_card(tmp_path):
    folder = tmp_path / "medmnist_adrenalmnist3d"
    _write(folder / "adrenalmnist3d.npz", sizes=(3, 2, 2), shape=(4, 4, 4))
    _write(folder / "adrenalmnist3d_64.npz", sizes=(3, 2, 2), shape=(6, 6, 6))
    assert _data().load_splits("adrenal", tmp_path)["val"][0].shape == (2, 1, 4, 4, 4)
    x, y = _data().load_splits("adrenal64", tmp_path)["test"]
    assert x.shape == (2, 1, 6, 6, 6) and (_marks(x)[:, 2] == 255 * y).all()


def test_a_missing_file_names_the_data_root_option(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pneumoniamnist\.npz not found .*pass --data-root"):
        _data().load_splits("pneumonia", tmp_path)


def test_images_dataset_gives_each_image_with_its_label_without_copying():
    x = np.random.default_rng(0).random((5, 1, 4, 4)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1])
    ds = _data().Images(x, y)
    assert len(ds) == 5 and np.shares_memory(ds.images.numpy(), x)  # no copy of a split (64³ train: 1.2 GB)
    for i in range(5):
        item = ds[i]
        np.testing.assert_array_equal(item["image"].numpy(), x[i])
        assert item["label"].dtype == torch.int64 and int(item["label"]) == y[i]  # class index for cross-entropy
    assert set(_data().Images(x)[3]) == {"image"}


@pytest.mark.parametrize("result, dataset, documented", [  # the --set of docs/benchmarks_medmnist.md "Exact commands"
    ("medmnist_pneumonia", "pneumonia", {"ssl_epochs": 24, "ft_epochs": 12, "patience": 4}),
    ("medmnist_adrenal", "adrenal", {"width": 16, "ssl_epochs": 100, "ft_epochs": 15, "patience": 4,
                                     "fractions": (1.0,), "ft_encoder_lrs": (1e-3, 1e-4, 1e-5)}),
    ("medmnist_adrenal64", "adrenal64", {"ssl_epochs": 8, "fractions": (1.0,), "ft_epochs": 8, "patience": 3,
                                         "ft_encoder_lrs": (1e-4,)}),
])
def test_defaults_with_the_documented_overrides_are_the_published_budgets(result, dataset, documented):
    """Rerunning a documented command gives the budget stored in its published JSON (every field it holds)."""
    published = json.loads((DOCS / "results" / f"{result}.json").read_text())["budget"]
    ours = asdict(replace(_data().DEFAULTS[dataset], **documented))
    ours = {k: list(v) if isinstance(v, tuple) else v for k, v in ours.items()}
    assert {k: ours[k] for k in published} == published


def test_defaults_are_the_shorter_budgets_the_docs_state():
    """docs/benchmarks_medmnist.md: "PneumoniaMNIST: ssl_epochs=4 ft_epochs=4 patience=2; AdrenalMNIST3D: width 8,
    stride 2, ssl_epochs=8 ft_epochs=10; fine-tuning augmentation on"."""
    text = " ".join((DOCS / "benchmarks_medmnist.md").read_text().split())
    assert ("PneumoniaMNIST: `ssl_epochs=4 ft_epochs=4 patience=2`; AdrenalMNIST3D: width 8, stride 2, "
            "`ssl_epochs=8 ft_epochs=10`; fine-tuning augmentation on") in text
    defaults = _data().DEFAULTS
    p, a = defaults["pneumonia"], defaults["adrenal"]
    assert (p.ssl_epochs, p.ft_epochs, p.patience, p.ft_augment) == (4, 4, 2, True)
    assert (a.width, a.conv1_stride, a.ssl_epochs, a.ft_epochs, a.ft_augment) == (8, 2, 8, 10, True)
