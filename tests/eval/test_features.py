"""Feature extraction: deterministic, batch-size invariant, flip averaging, cached per encoder weights."""

import numpy as np
import pytest
import torch

from eval_helpers import make_image_dataset, make_tiny_encoder
from medssl.eval.features import encoder_fingerprint, extract_features, feature_cache_path


def test_features_are_deterministic_batch_invariant_and_leave_the_encoder_mode_alone():
    enc = make_tiny_encoder()
    ds, age = make_image_dataset(20)
    enc.train()
    a = extract_features(enc, ds, batch_size=3)
    b = extract_features(enc, ds, batch_size=20)
    assert enc.training  # mode restored
    np.testing.assert_allclose(a["features"], b["features"], rtol=1e-5, atol=1e-6)
    assert a["features"].shape == (20, 8) and a["features"].dtype == np.float32
    np.testing.assert_allclose(a["age"], age, rtol=1e-6)
    np.testing.assert_array_equal(a["index"], np.arange(20))
    with torch.no_grad():  # eval mode: BatchNorm running statistics, not batch statistics
        ref = enc.eval()(torch.stack([d["image"] for d in ds])).numpy()
    np.testing.assert_allclose(a["features"], ref, rtol=1e-5, atol=1e-6)


def test_flip_averaging_is_the_mean_of_the_two_mirrored_embeddings():
    enc = make_tiny_encoder().eval()
    ds, _ = make_image_dataset(6)
    out = extract_features(enc, ds, tta_flip=True)["features"]
    x = torch.stack([d["image"] for d in ds])
    with torch.no_grad():
        ref = 0.5 * (enc(x) + enc(torch.flip(x, dims=(2,))))  # spatial axis 0 (left-right of RAS volumes)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(out, extract_features(enc, ds)["features"])


def test_cache_is_reused_and_invalidated_by_new_weights(tmp_path, monkeypatch):
    enc = make_tiny_encoder()
    ds, _ = make_image_dataset(8)
    path = feature_cache_path(tmp_path, enc, "pretrained")
    assert path.parent == tmp_path / "features" and encoder_fingerprint(enc)[:12] in path.name
    first = extract_features(enc, ds, cache=path)
    calls = []
    monkeypatch.setattr(type(enc), "forward", lambda self, x: calls.append(1) or torch.zeros(len(x), 8))
    again = extract_features(enc, ds, cache=path)  # cache hit: the encoder is not run
    assert calls == [] and np.array_equal(again["features"], first["features"])
    with torch.no_grad():
        next(enc.parameters()).add_(1.0)
    changed = extract_features(enc, ds, cache=path)  # new weights, same file name: the key differs → recomputed
    assert calls and np.all(changed["features"] == 0)
    n_calls = len(calls)
    assert extract_features(enc, ds, cache=path, tta_flip=True) is not None
    assert len(calls) > n_calls  # test-time flip is part of the key: recomputed, not served from the cache
    n_calls = len(calls)
    extract_features(enc, ds, cache=path, tta_flip=True)
    assert len(calls) == n_calls  # and then reused


@pytest.mark.parametrize("protocol", ["default", "site", "fewshot"])
def test_embeddings_with_nan_are_a_clear_error_naming_the_scans(protocol):
    """A NaN voxel (e.g. a NaN background in a float NIfTI) makes that scan's embedding NaN; the probes
    must stop with a message naming the encoder and the scans, not scikit-learn's 'Input X contains NaN'."""
    from medssl.eval.driver import EvalOptions, run_protocol

    rng = np.random.default_rng(0)
    n = 40
    feats = {"features": rng.normal(size=(n, 4)).astype(np.float32), "age": rng.uniform(20, 80, n),
             "site": np.arange(n) % 2, "subject": np.arange(n).astype(str), "index": np.arange(n) + 100}
    feats["features"][[7, 9], 2] = [np.nan, np.inf]
    opts = EvalOptions(protocol=protocol, n_boot=0, map_method="none", seeds=(0,), fractions=(1.0,))
    with pytest.raises(ValueError, match=r"pretrained embeddings: 2 of 40 scans .*NaN or infinite.*\[107, 109\]"):
        run_protocol(opts, {"pretrained": feats}, np.arange(n) % 4 != 0, {}, 0, ["age", "site"])


def test_cache_is_invalidated_by_edited_metadata(tmp_path):
    """Same scans, edited table (ages corrected, a site renamed, subjects relabelled): the cached
    age / site / label columns and subject ids must follow the table, not the first evaluation."""
    from medssl.data.dataset import CachedScans, MetadataCoder
    from medssl.data.manifest import Record

    np.save(tmp_path / "images.npy", np.random.default_rng(0).normal(size=(6, 1, 8, 8, 8)).astype(np.float16))
    images = np.load(tmp_path / "images.npy", mmap_mode="r")  # as the preprocessing cache of a run

    def dataset(ages, sites, labels, subjects):
        recs = [Record(f"/d/{i}.nii.gz", s, site=site, age=a, label=lab)
                for i, (a, site, lab, s) in enumerate(zip(ages, sites, labels, subjects))]
        return CachedScans(images, recs, list(range(6)), MetadataCoder(recs))

    enc, path = make_tiny_encoder(), tmp_path / "features.npz"
    first = extract_features(enc, dataset([20, 30, 40, 50, 60, 70], "AABBCC", "xyxyxy", "abcdef"), cache=path)
    np.testing.assert_array_equal(first["site"], [0, 0, 1, 1, 2, 2])
    edited = dataset([25, 30, 40, 50, 60, 70], "AABBDD", "xxxyyy", "aacdef")
    again = extract_features(enc, edited, cache=path)
    np.testing.assert_array_equal(again["age"], [25, 30, 40, 50, 60, 70])
    np.testing.assert_array_equal(again["site"], [0, 0, 1, 1, 2, 2])  # D is code 2 now, as C was
    np.testing.assert_array_equal(again["label"], [0, 0, 0, 1, 1, 1])
    assert list(again["subject"]) == list("aacdef")
    np.testing.assert_array_equal(again["features"], first["features"])  # same weights, same scans
    recoded = dataset([25, 30, 40, 50, 60, 70], "AABBDD", "xxxyyy", "aacdef")
    recoded.coder.vocab["site"] = ["D", "B", "A"]  # the same rows with another code table
    np.testing.assert_array_equal(extract_features(enc, recoded, cache=path)["site"], [2, 2, 1, 1, 0, 0])


def test_cache_works_for_scans_held_in_memory(tmp_path):
    """CachedScans over an in-memory array (``data.preload=ram``, or arrays built in Python) has no
    cache file next to it: the key hashes the image bytes, and a changed image is recomputed."""
    from medssl.data.dataset import CachedScans, MetadataCoder
    from medssl.data.manifest import Record

    images = np.random.default_rng(0).normal(size=(4, 1, 8, 8, 8)).astype(np.float32)
    recs = [Record(f"/d/{i}.nii.gz", f"s{i}", age=20.0 + i) for i in range(4)]
    enc, path = make_tiny_encoder(), tmp_path / "features.npz"
    first = extract_features(enc, CachedScans(images, recs, range(4), MetadataCoder(recs)), cache=path)
    images[2] += 1.0
    second = extract_features(enc, CachedScans(images, recs, range(4), MetadataCoder(recs)), cache=path)
    assert not np.allclose(first["features"][2], second["features"][2])
    np.testing.assert_array_equal(first["features"][[0, 1, 3]], second["features"][[0, 1, 3]])


class _Planted:
    """Unpickling this runs code: it marks ``builtins`` (what a malicious file in a shared run folder would do)."""

    def __reduce__(self):
        return exec, ("import builtins; builtins._medssl_unpickled = True",)


def test_a_planted_pickle_in_the_feature_cache_is_never_unpickled(tmp_path, monkeypatch):
    """A cache file with the right key whose arrays hold pickled objects: reading it must not run them
    (refused, or recomputed from the encoder), never unpickled."""
    import builtins

    monkeypatch.setattr(builtins, "_medssl_unpickled", False, raising=False)
    enc = make_tiny_encoder()
    ds, _ = make_image_dataset(4)
    path = feature_cache_path(tmp_path, enc, "pretrained")
    first = extract_features(enc, ds, cache=path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["features"] = np.array([_Planted()] * 4, dtype=object)
    np.savez(path, **arrays)
    try:
        again, error = extract_features(enc, ds, cache=path), ""
    except ValueError as e:
        again, error = None, str(e)
    assert builtins._medssl_unpickled is False
    if again is None:
        assert "pickle" in error
    else:
        np.testing.assert_array_equal(again["features"], first["features"])


def test_a_cache_file_replaced_since_the_dataset_was_made_is_keyed_by_its_bytes(tmp_path):
    """Another build replaced images.npy (and wrote its own index.json) after this dataset mapped the old file:
    index.json no longer describes the mapped rows, so the key falls back to their bytes, as for an array in
    memory; the stale marker of a build in progress ({"fingerprint": ""}) does the same."""
    import json
    import os

    from medssl.data.dataset import CachedScans, MetadataCoder
    from medssl.data.manifest import Record
    from medssl.eval.features import dataset_fingerprint

    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.normal(size=(4, 1, 8, 8, 8)).astype(np.float16))
    (tmp_path / "index.json").write_text(json.dumps({"fingerprint": "build-1"}))
    recs = [Record(f"/d/{i}.nii.gz", f"s{i}", age=20.0 + i) for i in range(4)]
    mapped = CachedScans(np.load(tmp_path / "images.npy", mmap_mode="r"), recs, range(4), MetadataCoder(recs))
    in_memory = CachedScans(np.array(mapped.images), recs, range(4), MetadataCoder(recs))
    keyed_by_index = dataset_fingerprint(mapped)
    assert keyed_by_index != dataset_fingerprint(in_memory)  # the cache file vouches for its rows
    np.save(tmp_path / "other.npy", rng.normal(size=(4, 1, 8, 8, 8)).astype(np.float16))
    os.replace(tmp_path / "other.npy", tmp_path / "images.npy")
    (tmp_path / "index.json").write_text(json.dumps({"fingerprint": "build-2"}))
    assert dataset_fingerprint(mapped) == dataset_fingerprint(in_memory)  # not "build-2"'s key
    fresh = CachedScans(np.load(tmp_path / "images.npy", mmap_mode="r"), recs, range(4), MetadataCoder(recs))
    (tmp_path / "index.json").write_text(json.dumps({"fingerprint": ""}))  # a rebuild under way
    assert dataset_fingerprint(fresh) == dataset_fingerprint(CachedScans(np.array(fresh.images), recs, range(4),
                                                                          MetadataCoder(recs)))


def test_two_writers_of_one_feature_cache_do_not_share_a_temporary_file(tmp_path, monkeypatch):
    """Two evaluations of one run started together (say --protocol linear and knn: both use the run's own data)
    write the same features/<tag>-<hash>.npz. Both wrote through the one temporary name `<cache>.tmp.npz`, so
    the first rename took the other's file away (or moved it while still being written) and the other failed
    with FileNotFoundError. Each writer now has its own temporary file, and none is left behind."""
    enc = make_tiny_encoder()
    ds, _ = make_image_dataset(4)
    path = feature_cache_path(tmp_path, enc, "pretrained")
    real, calls = np.savez, []

    def savez(file, *args, **kwargs):
        calls.append(str(file))
        real(file, *args, **kwargs)
        if len(calls) == 1:  # another evaluation writes the same cache before this one renames its file
            extract_features(enc, ds, cache=path)

    monkeypatch.setattr(np, "savez", savez)
    out = extract_features(enc, ds, cache=path)
    assert len(calls) == 2 and calls[0] != calls[1]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["features"], out["features"])
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_rows_of_a_subset_keep_their_order_index_subject_and_age():
    """A CachedScans exposing some records in another order (a split, e.g. indices 5, 2, 4): row i of every
    output column is exposed record i (its image through the encoder in eval mode, its record index, subject
    and age), not record i of the table."""
    from medssl.data.dataset import CachedScans, MetadataCoder
    from medssl.data.manifest import Record

    images = np.random.default_rng(1).normal(size=(6, 1, 8, 8, 8)).astype(np.float32)
    recs = [Record(f"/d/{i}.nii.gz", f"sub-{i}", age=20.0 + i) for i in range(6)]
    enc, order = make_tiny_encoder(), [5, 2, 4]
    out = extract_features(enc, CachedScans(images, recs, order, MetadataCoder(recs)), batch_size=2)
    assert out["index"].tolist() == order and out["subject"].tolist() == ["sub-5", "sub-2", "sub-4"]
    np.testing.assert_allclose(out["age"], [25.0, 22.0, 24.0])
    with torch.no_grad():
        ref = enc.eval()(torch.from_numpy(images[order])).numpy()
    np.testing.assert_allclose(out["features"], ref, rtol=1e-5, atol=1e-6)
