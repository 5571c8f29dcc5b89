"""Files that hold pickled objects are refused, never unpickled: a bare ``.npy`` scan (medssl.data.npy) and the
labels of a MedMNIST ``.npz`` read for its records (medssl.data.medmnist_records)."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from medssl.data.manifest import ManifestError
from medssl.data.medmnist_records import medmnist_labels
from medssl.data.npy import read_npy
from medssl.io.errors import BadFileError


class _Planted:
    """Unpickling this runs code: it marks ``builtins`` (what a malicious file in a shared data folder would do)."""

    def __reduce__(self):
        return exec, ("import builtins; builtins._medssl_unpickled = True",)


@pytest.fixture
def unpickled(monkeypatch):
    monkeypatch.setattr(builtins, "_medssl_unpickled", False, raising=False)
    return lambda: builtins._medssl_unpickled


def test_a_pickled_npy_scan_is_refused_as_pickled(tmp_path, unpickled):
    path = tmp_path / "sub-01.npy"
    np.save(path, np.array([_Planted()] * 8, dtype=object), allow_pickle=True)
    with pytest.raises(BadFileError, match="holds pickled Python objects, which medssl never loads") as err:
        read_npy(path, np.eye(4))
    assert str(path) in str(err.value)
    assert unpickled() is False
    good = tmp_path / "sub-02.npy"
    np.save(good, np.ones((2, 3, 4), np.float32))
    assert read_npy(good, np.eye(4)).spatial_shape == (2, 3, 4)  # the same call reads a plain array


def test_pickled_medmnist_labels_are_refused_not_run(tmp_path, unpickled):
    path = tmp_path / "fakemnist.npz"
    np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.array([[_Planted()], [0]], object))
    with pytest.raises(ManifestError, match=r"fakemnist.npz: the MedMNIST file holds pickled Python objects, which medssl never"):
        medmnist_labels(path, "train")
    assert unpickled() is False
    np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.array([[1], [0]], np.uint8))
    assert medmnist_labels(path, "train").tolist() == [1, 0]
