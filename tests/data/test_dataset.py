"""CachedScans: item i of a split is cache row indices[i] with that row's own metadata."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medssl.data.card import load_card
from medssl.data.dataset import CachedScans, MetadataCoder
from medssl.data.prepare import make_loader, make_preprocessor, prepare_card


@pytest.mark.parametrize("where", ["memmap", "tensor"])
def test_items_of_a_subset_are_their_rows_images_and_metadata(cohort_copy, tmp_path, where):
    """A split's indices are not 0..n-1 (here 7 rows out of 40, in no order): each item's image is its scan
    preprocessed directly from the NIfTI file (float16-rounded, as cached), and its age, site, sex, label and
    index are those of the same record; a memory map and a tensor (data.preload=gpu's form) give the same."""
    card = load_card("synthetic")
    res = prepare_card(card, tmp_path / "c", root=cohort_copy, shape=[8, 8, 8], progress=False)
    images = res.cache.images if where == "memmap" else torch.from_numpy(np.array(res.cache.images))
    indices = [31, 4, 17, 0, 39, 22, 9]
    coder = MetadataCoder(res.records)
    ds = CachedScans(images, res.records, indices, coder)
    loader = make_loader(card, make_preprocessor(card, [8, 8, 8]), root=cohort_copy)
    assert len(ds) == len(indices)
    sites = {r.site for r in res.records}
    assert len(sites) > 1 and len({r.age for r in res.records}) > 1  # a wrong row shows in the metadata too
    for i, j in enumerate(indices):
        item, rec = ds[i], res.records[j]
        expected = torch.from_numpy(loader(rec).astype(np.float16).astype(np.float32))
        assert item["image"].dtype == torch.float32 and torch.equal(item["image"], expected), (i, j)
        assert int(item["index"]) == j
        assert item["age"].item() == pytest.approx(rec.age) if not math.isnan(rec.age) else math.isnan(item["age"])
        for field in ("site", "sex", "label"):
            code = int(item[field])
            assert (coder.vocab[field][code] if code >= 0 else "") == getattr(rec, field), (field, i, j)


def test_missing_metadata_is_nan_and_minus_one_never_a_real_value():
    """A record without age, site, sex or label gives age NaN and code -1 (which the losses refuse and the probes
    leave out), not 0, which would be age 0 or the first site / class."""
    from medssl.data.manifest import Record

    recs = [Record(path="a.nii.gz", subject="a", age=30.0, site="X", sex="F", label="1"),
            Record(path="b.nii.gz", subject="b")]
    ds = CachedScans(np.zeros((2, 1, 2, 2), np.float16), recs, [1, 0], MetadataCoder(recs))
    missing, known = ds[0], ds[1]
    assert math.isnan(missing["age"]) and [int(missing[f]) for f in ("site", "sex", "label")] == [-1, -1, -1]
    assert known["age"] == 30.0 and [int(known[f]) for f in ("site", "sex", "label")] == [0, 0, 0]
