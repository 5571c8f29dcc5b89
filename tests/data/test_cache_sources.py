"""Cache invalidation covers every file a scan is read from: the slices of a DICOM series
folder, the data file of a MetaImage ``.mhd`` / detached NRRD ``.nhdr`` header.

mtimes are set explicitly with ``os.utime`` (never by sleeping): a rewrite within the
filesystem's mtime resolution would otherwise keep the old mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medssl.data.cache import build_cache, cache_fingerprint
from medssl.data.sources import DICOM_REVISION, detached_data_files, source_files, source_signature
from medssl.data.card import load_card
from medssl.data.prepare import prepare_card

CT5N = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests/98892001/CT5N"  # 5 real CT slices, 16x16


def _card(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "card.yaml"
    path.write_text(f"name: test_card\nmodality: CT\n{text}\nlicence: test\ncitation: test\nobtain: test\n")
    return path


def _series(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(sorted(CT5N.iterdir())):
        shutil.copy(f, folder / f"{i:03d}.dcm")
    return folder


def _shift_mtime(path: Path, seconds: int = 5) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def _rewrite_slope(path: Path, slope: str) -> None:
    """Rewrite a slice in place with another RescaleSlope (what the reviewer did)."""
    ds = pydicom.dcmread(path)
    ds.RescaleSlope = slope
    ds.save_as(path)


@pytest.fixture
def ct_card(tmp_path):
    root = tmp_path / "data"
    _series(root / "a")
    _series(root / "b")
    (root / "ct.tsv").write_text("subject\tpath\na\ta\nb\tb\n")
    card = load_card(_card(tmp_path, "dimensionality: 3\nformat: dicom_series\nmanifest: ct.tsv\n"
                                      "columns: {subject: subject, path: path}\n"
                                      "preprocessing: {shape: [16, 16, 5], normalise: none}"))
    return card, root


def _prepare(card, root, out):
    return prepare_card(card, out, root=root, progress=False).cache


def _assert_equals_fresh(card, root, cache, fresh_dir):
    fresh = _prepare(card, root, fresh_dir)
    assert fresh.n_built == len(fresh.images)
    np.testing.assert_array_equal(np.asarray(cache.images), np.asarray(fresh.images))


def test_a_dicom_slice_rewritten_in_place_rebuilds_the_scan(ct_card, tmp_path):
    card, root = ct_card
    first = _prepare(card, root, tmp_path / "c")
    assert first.n_built == 2
    before = np.asarray(first.images).copy()
    assert _prepare(card, root, tmp_path / "c").n_built == 0  # unchanged sources: served from the cache

    victim = root / "a" / "002.dcm"
    size, mtime = victim.stat().st_size, victim.stat().st_mtime_ns
    _rewrite_slope(victim, "2")  # same length as "1": same file size
    assert victim.stat().st_size == size
    os.utime(victim, ns=(mtime + 5 * 10**9, mtime + 5 * 10**9))  # a different mtime, whatever the resolution
    again = _prepare(card, root, tmp_path / "c")
    assert (again.n_built, again.n_reused) == (1, 1)  # the changed scan rebuilt, the other one reused
    assert not np.array_equal(np.asarray(again.images)[0], before[0])  # the new slope is in the cache
    np.testing.assert_array_equal(np.asarray(again.images)[1], before[1])
    _assert_equals_fresh(card, root, again, tmp_path / "fresh1")
    assert _prepare(card, root, tmp_path / "c").n_built == 0

    mtime = victim.stat().st_mtime_ns
    _rewrite_slope(victim, "2.5")  # another size ...
    assert victim.stat().st_size != size
    os.utime(victim, ns=(mtime, mtime))  # ... and the same mtime: the size alone is noticed
    again = _prepare(card, root, tmp_path / "c")
    assert again.n_built == 1
    _assert_equals_fresh(card, root, again, tmp_path / "fresh2")


def test_a_slice_added_or_removed_rebuilds(ct_card, tmp_path):
    card, root = ct_card
    _prepare(card, root, tmp_path / "c")
    (root / "b" / "004.dcm").rename(tmp_path / "held_out.dcm")  # a slice removed: rename keeps its mtime
    again = _prepare(card, root, tmp_path / "c")
    assert again.n_built == 1 and again.images.shape == (2, 1, 16, 16, 5)
    _assert_equals_fresh(card, root, again, tmp_path / "fresh")
    (tmp_path / "held_out.dcm").rename(root / "b" / "004.dcm")
    assert _prepare(card, root, tmp_path / "c").n_built == 1


def test_folder_signature_is_every_file_but_hidden_ones(tmp_path):
    folder = _series(tmp_path / "s")
    sig = source_signature(folder)
    assert sig.startswith("dir:") and source_signature(folder) == sig
    (folder / ".DS_Store").write_bytes(b"x")  # never read by the series reader
    assert source_signature(folder) == sig
    (folder / "README.txt").write_text("notes")  # read (checked for a DICM marker): counts
    with_readme = source_signature(folder)
    assert with_readme != sig
    (folder / "sub").mkdir()  # read with recursive=True: counts
    (folder / "sub" / "x.dcm").write_bytes(b"y")
    assert source_signature(folder) != with_readme
    _shift_mtime(folder / "sub" / "x.dcm")
    assert source_signature(folder) not in (sig, with_readme)


# ------------------------------------------------------------------ detached headers

MHD = """ObjectType = Image
NDims = 3
BinaryData = True
BinaryDataByteOrderMSB = False
CompressedData = False
TransformMatrix = 1 0 0 0 1 0 0 0 1
Offset = 0 0 0
ElementSpacing = 1 1 1
DimSize = 6 5 4
ElementType = MET_FLOAT
ElementDataFile = {data}
"""


def _mhd(folder: Path, values: np.ndarray, data: str = "img.raw") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img.mhd").write_text(MHD.format(data=data))
    values.astype("<f4").tofile(folder / data)
    return folder / "img.mhd"


def test_an_mhd_whose_raw_file_is_rewritten_rebuilds(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    header = _mhd(root / "s1", rng.random((4, 5, 6)))
    _mhd(root / "s2", rng.random((4, 5, 6)))
    card = load_card(_card(tmp_path, "dimensionality: 3\nfiles: '*/img.mhd'\npath_regex: '(?P<subject>s\\d+)/'\n"
                                     "preprocessing: {shape: [6, 5, 4], normalise: none}"))
    first = _prepare(card, root, tmp_path / "c")
    assert first.n_built == 2
    assert _prepare(card, root, tmp_path / "c").n_built == 0  # unchanged: served from the cache

    raw = header.with_suffix(".raw")
    mtime = raw.stat().st_mtime_ns
    np.full((4, 5, 6), 7.0, dtype="<f4").tofile(raw)  # same size, new values; the header is untouched
    os.utime(raw, ns=(mtime + 5 * 10**9, mtime + 5 * 10**9))
    again = _prepare(card, root, tmp_path / "c")
    assert again.n_built == 1
    assert np.all(np.asarray(again.images)[0] == 7)
    _assert_equals_fresh(card, root, again, tmp_path / "fresh")
    assert _prepare(card, root, tmp_path / "c").n_built == 0


def test_detached_data_files_of_mhd_and_nhdr(tmp_path):
    h = _mhd(tmp_path / "m", np.zeros(120))
    assert detached_data_files(h) == [tmp_path / "m" / "img.raw"]
    assert source_files(h) == ["img.mhd", "img.raw"]
    (tmp_path / "m" / "img.mhd").write_text(MHD.format(data="LOCAL"))
    assert detached_data_files(h) == [] and source_files(h) == ["img.mhd"]
    (tmp_path / "m" / "img.mhd").write_text(MHD.format(data="../raw/data file.raw"))  # relative, with a space
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "data file.raw").write_bytes(b"0")
    assert detached_data_files(h) == [tmp_path / "m" / "../raw/data file.raw"]
    (tmp_path / "m" / "img.mhd").write_text(MHD.format(data="LIST 2D\nz0.raw\nz1.raw"))
    assert detached_data_files(h) == [tmp_path / "m" / "z0.raw", tmp_path / "m" / "z1.raw"]
    (tmp_path / "m" / "img.mhd").write_text(MHD.format(data="z%02d.raw 1 3 1"))
    assert [p.name for p in detached_data_files(h)] == ["z01.raw", "z02.raw", "z03.raw"]

    n = tmp_path / "n" / "vol.nhdr"
    n.parent.mkdir()
    nrrd = "NRRD0004\n# data file: not/this.raw\ntype: float\ndimension: 3\nsizes: 6 5 4\nencoding: raw\n"
    n.write_text(nrrd + "data file: ./sub/vol.raw\n")
    assert detached_data_files(n) == [n.parent / "./sub/vol.raw"]
    assert source_files(n) == ["vol.nhdr", os.path.join("sub", "vol.raw")]
    n.write_text(nrrd + "note:=data file: no\ndatafile: vol.raw\n\nbinary junk: x")
    assert detached_data_files(n) == [n.parent / "vol.raw"]
    n.write_text(nrrd + "data file: LIST\na.raw\nb.raw\n")
    assert detached_data_files(n) == [n.parent / "a.raw", n.parent / "b.raw"]
    n.write_text(nrrd + "\ndata file: after-the-header.raw\n")  # not in the header: unparsed
    assert detached_data_files(n) is None


def test_an_unparsable_header_falls_back_to_the_files_with_its_stem(tmp_path):
    h = tmp_path / "img.mhd"
    h.write_text("ObjectType = Image\nNDims = 3\n")  # no ElementDataFile
    (tmp_path / "img.raw").write_bytes(b"\0" * 8)
    (tmp_path / "img.zraw").write_bytes(b"\0" * 4)
    (tmp_path / "other.raw").write_bytes(b"\0")
    (tmp_path / "imgX.raw").write_bytes(b"\0")
    assert detached_data_files(h) is None
    assert source_files(h) == ["img.mhd", "img.raw", "img.zraw"]
    sig = source_signature(h)
    _shift_mtime(tmp_path / "img.raw")
    assert source_signature(h) != sig
    sig = source_signature(h)
    _shift_mtime(tmp_path / "other.raw")
    assert source_signature(h) == sig


# ------------------------------------------------------------------ caches written before this change


def _old_fingerprint(items, settings):
    """The fingerprint of caches built before folders / data files were covered: (size, mtime) of the path."""
    h = hashlib.sha256(settings.encode())
    for f in items:
        st = os.stat(f)
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _age_index(cache_dir: Path, fingerprint: str) -> None:
    index_path = cache_dir / "index.json"
    index = json.loads(index_path.read_text())
    index["fingerprint"] = fingerprint
    index.pop("sources")  # older caches kept no per-row sources
    index_path.write_text(json.dumps(index))


def test_an_older_cache_of_plain_files_is_reused_and_one_of_folders_is_rebuilt(tmp_path):
    files = []
    for i in range(3):
        files.append(str(tmp_path / f"f{i}.npy"))
        np.save(files[-1], np.full((1, 2, 2), i, dtype=np.float32))
    assert cache_fingerprint(files, "s", None) == _old_fingerprint(files, "s")  # unchanged for plain files
    calls = []
    build_cache(files, lambda p: calls.append(p) or np.load(p), (1, 2, 2), tmp_path / "c", settings="s", progress=False)
    _age_index(tmp_path / "c", _old_fingerprint(files, "s"))
    assert build_cache(files, np.load, (1, 2, 2), tmp_path / "c", settings="s", progress=False).n_built == 0

    folders = [str(_series(tmp_path / f"s{i}")) for i in range(2)]

    def load(folder):
        return np.full((1, 2, 2), len(os.listdir(folder)), dtype=np.float32)

    build_cache(folders, load, (1, 2, 2), tmp_path / "d", settings="s", progress=False)
    _age_index(tmp_path / "d", _old_fingerprint(folders, "s"))  # what an older medssl wrote: may be stale
    res = build_cache(folders, load, (1, 2, 2), tmp_path / "d", settings="s", progress=False)
    assert res.n_built == 2 and res.valid.all()
    assert build_cache(folders, load, (1, 2, 2), tmp_path / "d", settings="s", progress=False).n_built == 0


def _pre_padding_signature(path: str) -> str:
    """source_signature as medssl wrote it before DICOM pixel padding was filled (reproduced here)."""
    if not os.path.isdir(path):
        st = os.stat(path)
        return f"{st.st_size}|{st.st_mtime_ns}"
    h = hashlib.sha256(b"dir\n")
    for name in sorted(n for n in os.listdir(path) if not n.startswith(".")):  # flat series folders
        st = os.stat(os.path.join(path, name))
        h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return "dir:" + h.hexdigest()[:20]


def _as_written_before_padding(index_path, sources) -> None:
    """Rewrite a cache index as medssl wrote it before DICOM pixel padding was filled: the sources' old signatures,
    no DICOM revision in the settings, an older fingerprint."""
    index = json.loads(index_path.read_text())
    settings = json.loads(index["settings"])
    settings.pop("dicom_revision", None)
    index["settings"] = json.dumps(settings, sort_keys=True, default=str)
    index["sources"] = [_pre_padding_signature(str(p)) for p in sources]
    index["fingerprint"] = "written-by-an-older-medssl"
    index_path.write_text(json.dumps(index))


def test_dicom_rows_cached_before_pixel_padding_was_filled_are_rebuilt(ct_card, tmp_path):
    # Those rows hold the padding as tissue (-3024 HU in a GE CT); unchanged files would have kept them forever.
    card, root = ct_card
    cache = _prepare(card, root, tmp_path / "c")
    _as_written_before_padding(tmp_path / "c" / "index.json", [root / k for k in ("a", "b")])
    again = _prepare(card, root, tmp_path / "c")
    assert (again.n_built, again.n_reused) == (2, 0)
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(cache.images))
    assert _prepare(card, root, tmp_path / "c").n_built == 0  # then reused as before
    one = root / "a" / "000.dcm"
    assert source_signature(one) != _pre_padding_signature(str(one))  # single DICOM files too
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros(2))
    assert source_signature(npy) == _pre_padding_signature(str(npy))  # other formats keep their rows


def test_rows_of_a_format_dicom_card_with_other_file_names_cached_before_padding_was_filled_are_rebuilt(tmp_path):
    # `format: dicom` reads files of any name, e.g. the UID-named files of many exports ("1.2.840.….320"); their
    # source signature does not say DICOM (the suffix is not .dcm), so the reader's revision is in the settings
    root = tmp_path / "data"
    root.mkdir()
    names = ["1.2.840.113619.2.55.3.320", "1.2.840.113619.2.55.3.321"]
    for name, f in zip(names, sorted(CT5N.iterdir())):
        shutil.copy(f, root / name)
    (root / "ct.tsv").write_text("subject\tpath\n" + "".join(f"s{i}\t{n}\n" for i, n in enumerate(names)))
    card = load_card(_card(tmp_path, "dimensionality: 2\nformat: dicom\nmanifest: ct.tsv\n"
                                      "columns: {subject: subject, path: path}\n"
                                      "preprocessing: {shape: [16, 16], normalise: none}"))
    cache = _prepare(card, root, tmp_path / "c")
    assert cache.n_built == 2 and _prepare(card, root, tmp_path / "c").n_built == 0
    _as_written_before_padding(tmp_path / "c" / "index.json", [root / n for n in names])
    again = _prepare(card, root, tmp_path / "c")
    assert (again.n_built, again.n_reused) == (2, 0)
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(cache.images))
    assert _prepare(card, root, tmp_path / "c").n_built == 0  # then reused as before


def test_a_descending_numbered_pattern_and_dicom_files_without_a_suffix(tmp_path):
    h = _mhd(tmp_path / "m", np.zeros(120))
    (tmp_path / "m" / "img.mhd").write_text(MHD.format(data="z%02d.raw 3 1 -1"))  # last to first, both included
    assert [p.name for p in detached_data_files(h)] == ["z03.raw", "z02.raw", "z01.raw"]
    slice_file = tmp_path / "IM000001"  # DICOM files from scanners and PACS often have no suffix
    slice_file.write_bytes(b"x")
    assert source_signature(slice_file).startswith(f"dicom{DICOM_REVISION}:")
    assert source_signature(tmp_path / "m" / "img.raw").count(":") == 0  # other files: size|mtime only
