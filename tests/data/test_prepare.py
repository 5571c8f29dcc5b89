"""`data prepare`: records → preprocessed memory-mapped cache (NIfTI, MedMNIST, .npy), reuse by runs."""

from __future__ import annotations

import os
import pickle

import nibabel as nib
import numpy as np
import pytest
import torch

from medssl.cli import main
from medssl.config import ConfigError, load_config
from medssl.data.card import DataCard, load_card
from medssl.data.dataset import CachedScans, MetadataCoder, preload
from medssl.data.manifest import natural_order
from medssl.data.manifest import Record, build_manifest, read_manifest
from medssl.data.prepare import make_loader, make_preprocessor, prepare_card
from medssl.io import read_nifti
from medssl.io.errors import BadFileError


def test_nifti_cache_matches_direct_preprocessing(cohort_copy, tmp_path):
    card = load_card("synthetic")
    res = prepare_card(card, tmp_path / "cache", root=cohort_copy, shape=[16, 20, 16], normalise="zscore")
    assert res.cache.images.shape == (40, 1, 16, 20, 16) and res.cache.n_built == 40
    pre = make_preprocessor(card, [16, 20, 16], [], "zscore")
    for i in (0, 17, 39):
        direct = pre(read_nifti(res.records[i].path))
        np.testing.assert_allclose(res.cache.images[i].astype(np.float32), direct, atol=2e-3 * np.abs(direct).max())
        zs = res.cache.images[i].astype(np.float64)
        assert abs(zs.mean()) < 1e-2 and abs(zs.std() - 1) < 1e-2  # z-scored per volume
    assert [r.path for r in read_manifest(tmp_path / "cache" / "manifest.tsv")] == [r.path for r in res.records]
    again = prepare_card(card, tmp_path / "cache", root=cohort_copy, shape=[16, 20, 16], normalise="zscore")
    assert again.cache.n_built == 0  # idempotent
    other = prepare_card(card, tmp_path / "cache", root=cohort_copy, shape=[16, 20, 16], normalise="minmax")
    assert other.cache.n_built == 40 and float(other.cache.images[0].min()) == 0.0  # settings changed → rebuilt


def test_cli_prepare_then_a_run_reuses_the_cache(cohort_copy, tmp_path, capsys):
    args = ["data", "prepare", "synthetic", "--root", str(cohort_copy), "--out", str(tmp_path / "c"),
            "--shape", "16", "16", "16", "--normalise", "zscore"]
    assert main(args) == 0
    assert "40 preprocessed now, 0 already cached, 0 skipped" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 preprocessed now, 40 already cached" in capsys.readouterr().out
    scan = next(cohort_copy.glob("sub-*/anat/*_T1w.nii.gz"))
    os.utime(scan, ns=(scan.stat().st_atime_ns, scan.stat().st_mtime_ns + 5 * 10**9))  # one scan touched
    assert main(args) == 0
    assert "1 preprocessed now, 39 already cached (39 copied from the previous cache)" in capsys.readouterr().out
    images = tmp_path / "c" / "images.npy"
    stamp = images.stat().st_mtime_ns, (tmp_path / "c" / "index.json").read_text()
    from medssl.api import prepare_data

    cfg_overrides = [f"data.root={cohort_copy}", f"data.cache_dir={tmp_path / 'c'}", "data.shape=[16,16,16]",
                     "augment.crop_size=[12,12,12]", f"output_dir={tmp_path / 'run'}"]
    cfg = load_config(None, cfg_overrides)
    (tmp_path / "run").mkdir()
    data = prepare_data(cfg, tmp_path / "run", progress=False)
    assert (images.stat().st_mtime_ns, (tmp_path / "c" / "index.json").read_text()) == stamp  # reused as is
    assert len(data.train) + len(data.test) == 40 and data.images.shape == (40, 1, 16, 16, 16)
    splits = [r.split for r in read_manifest(tmp_path / "run" / "manifest.tsv")]
    assert splits.count("test") == round(0.25 * 40) and set(splits) == {"train", "test"}
    small = prepare_data(load_config(None, [*cfg_overrides, "data.limit=10"]), tmp_path / "run", progress=False)
    assert small.images.shape == (10, 1, 16, 16, 16) and np.array_equal(small.images, data.images[:10])
    assert (images.stat().st_mtime_ns, (tmp_path / "c" / "index.json").read_text()) == stamp  # the prepared cache stays whole


def test_medmnist_cache_holds_the_published_pixels(tmp_path, medmnist_file):
    arrays = medmnist_file(tmp_path / "set.npz", sizes=(5, 2, 3), shape=(8, 6))
    card = DataCard(name="m", modality="CT", dimensionality=2, format="medmnist", npz="set.npz",
                    preprocessing={"shape": [6, 8], "normalise": "none"})
    res = prepare_card(card, tmp_path / "c", root=tmp_path, progress=False)
    for r, img in zip(res.records, res.cache.images):
        stored = arrays[f"{r.npz_split}_images"][r.index]  # (H, W) uint8 → medssl's (W, H) order, / 255
        np.testing.assert_allclose(img[0].astype(np.float32), stored.T / 255.0, atol=1e-3)
    assert res.cache.images.shape == (10, 1, 6, 8)


def test_npy_card_uses_the_reference_geometry(tmp_path):
    """OpenBHB-like: .npy arrays in train/ and val/, official splits mapped, geometry from a NIfTI template."""
    rng = np.random.default_rng(0)
    (tmp_path / "resource").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((6, 7, 5), np.float32), np.diag([2.0, 2.0, 2.0, 1.0])),
             tmp_path / "resource" / "ref.nii.gz")
    rows, arrays = [], {}
    for sid, split in (("1", "train"), ("2", "internal_test"), ("3", "external_test")):
        folder = tmp_path / ("train" if split == "train" else "val") / f"sub-{sid}"
        folder.mkdir(parents=True)
        arrays[sid] = rng.normal(size=(1, 1, 6, 7, 5)).astype(np.float32)
        np.save(folder / "t1.npy", arrays[sid])
        rows.append(f"{sid}\t{split}\t{20 + int(sid)}")
    (tmp_path / "participants.tsv").write_text("participant_id\tsplit\tage\n" + "\n".join(rows) + "\n")
    card = DataCard(name="bhb", modality="MR", dimensionality=3, format="npy", manifest="participants.tsv",
                    geometry={"reference": "resource/ref.nii.gz"},
                    path_template=["train/sub-{participant_id}/t1.npy", "val/sub-{participant_id}/t1.npy"],
                    columns={"subject": "participant_id", "split": "split", "age": "age"},
                    splits={"train": ["train"], "val": ["internal_test"], "test": ["external_test"]},
                    preprocessing={"shape": [6, 7, 5], "normalise": "none"})
    res = prepare_card(card, tmp_path / "c", root=tmp_path, progress=False)
    assert [r.split for r in res.records] == ["train", "val", "test"]
    for r, img in zip(res.records, res.cache.images):
        np.testing.assert_allclose(img.astype(np.float32), arrays[r.subject][0], atol=4e-3)
    vol = make_loader(card, make_preprocessor(card), root=tmp_path).reader(res.records[0])
    assert vol.spacing == (2.0, 2.0, 2.0) and vol.orientation == "RAS"
    np.save(tmp_path / "val" / "sub-2" / "t1.npy", np.zeros((1, 6, 7, 4), np.float32))  # off the reference grid
    with pytest.raises(BadFileError, match=r"spatial shape \(6, 7, 4\) differs from the geometry reference"):
        prepare_card(card, tmp_path / "c2", root=tmp_path, progress=False)


def test_loader_rejects_wrong_dimensionality_and_channels(cohort_copy):
    card = load_card("synthetic")
    rec = build_manifest(card, cohort_copy)[0]
    loader = make_loader(card, make_preprocessor(card, [8, 8, 8]))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(loader))(rec), loader(rec))  # what a process pool needs
    loader = make_loader(card, make_preprocessor(card, [8, 8, 8]), channels=3)
    with pytest.raises(BadFileError, match=r"image is 3D with 1 channel\(s\); expected 3D with 3"):
        loader(rec)
    card2d = DataCard(name="x", modality="DX", dimensionality=2, manifest="participants.tsv",
                      columns={"subject": "participant_id"}, path_template="{participant_id}/anat/{participant_id}_T1w.nii.gz")
    with pytest.raises(BadFileError, match=r"image is 3D .* expected 2D"):
        make_loader(card2d, make_preprocessor(card2d, [8, 8]))(rec)
    with pytest.raises(ConfigError, match=r"card 'x' is 2D: give a shape with 2 values"):
        make_preprocessor(card2d, [8, 8, 8])


def test_cached_dataset_pickles_the_memmap_by_name(cohort_copy, tmp_path):
    res = prepare_card(load_card("synthetic"), tmp_path / "c", root=cohort_copy, shape=[16, 16, 16], progress=False)
    ds = CachedScans(res.cache.images, res.records, list(range(40)), MetadataCoder(res.records))
    blob = pickle.dumps(ds)
    assert len(blob) < res.cache.images.nbytes / 4  # not the 40 × 16³ × 2 bytes of pixels
    back = pickle.loads(blob)
    assert isinstance(back.images, np.memmap)
    assert all(np.array_equal(back[i]["image"], ds[i]["image"]) for i in (0, 39))
    head = CachedScans(res.cache.images[:5], res.records[:5], [0, 1], MetadataCoder(res.records))  # data.limit=5
    blob = pickle.dumps(head)
    assert len(blob) < res.cache.images[:5].nbytes / 4  # the first rows of the cache go by name too
    back = pickle.loads(blob)
    assert back.images.shape == head.images.shape and np.array_equal(back[1]["image"], head[1]["image"])
    strided = CachedScans(res.cache.images[::2], res.records[::2], [0, 1], MetadataCoder(res.records))
    assert np.array_equal(pickle.loads(pickle.dumps(strided))[1]["image"], strided[1]["image"])  # copied, still right


def test_cli_help_of_the_data_commands(capsys):
    for sub in ("check", "prepare"):
        with pytest.raises(SystemExit) as e:
            main(["data", sub, "--help"])
        assert e.value.code == 0 and f"usage: medssl data {sub}" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_then_rerun_continues(cohort_copy, tmp_path, capsys):
    """Interrupt `medssl data prepare` with SIGINT (Ctrl-C) mid-way; the rerun only does the rest."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    # upsampling 24³ at 9.3 mm to 3 mm makes each scan slow enough to be caught mid-way
    cmd = [sys.executable, "-m", "medssl.cli", "data", "prepare", "synthetic", "--root", str(cohort_copy), "--out",
           str(tmp_path / "c"), "--shape", "32", "32", "32", "--spacing", "3", "3", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            done = re.findall(r"\| *(\d+)/40 ", "".join(err))
            if done and int(done[-1]) >= 3:  # the progress bar shows scans done
                break
            time.sleep(0.02)
        assert proc.poll() is None, "prepare finished before it could be interrupted: " + "".join(err)[-500:]
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    assert proc.returncode == 130, "".join(err)[-2000:]
    assert "interrupted; progress is saved" in "".join(err)
    saved = int(np.load(tmp_path / "c" / "done.npy").sum())
    assert 3 <= saved < 40
    capsys.readouterr()
    assert main(cmd[3:]) == 0
    assert f"{40 - saved} preprocessed now, {saved} already cached" in capsys.readouterr().out


def test_reader_options_that_do_not_fit_the_files_stop_prepare_even_when_skipping(cohort_copy, tmp_path):
    """`voi` is a DICOM option; with `format: auto` on NIfTI files it is a settings error of the card,
    not a bad file: skipping would have marked every scan bad and cached nothing."""
    import dataclasses

    card = dataclasses.replace(load_card("synthetic"), reader_options={"voi": "auto"})
    with pytest.raises(ConfigError, match=r"reader_options: read_nifti .* does not take \['voi'\].*set the card's `format`"):
        prepare_card(card, tmp_path / "c", root=cohort_copy, shape=[8, 8, 8], on_bad_file="skip", progress=False)


def test_cli_prepare_fails_when_every_scan_was_skipped(cohort_copy, tmp_path, capsys):
    """Skipping is for a few bad files; a cache with nothing usable is an error, not a success."""
    args = ["data", "prepare", "synthetic", "--root", str(cohort_copy), "--out", str(tmp_path / "c"),
            "--shape", "8", "8", "8", "--channels", "3", "--on-bad-file", "skip"]
    assert main(args) == 1
    out = capsys.readouterr()
    assert "40 skipped" in out.out and "expected 3D with 3" in out.out
    assert "every scan was skipped, the cache holds nothing usable" in out.err and "use it with" not in out.out


@pytest.mark.parametrize("flags, words", [
    (["--shape", "0", "16", "16"], "--shape / data.shape must be 3 positive sizes in voxels, got [0, 16, 16]"),
    (["--spacing", "0", "0", "0"], "--spacing / data.spacing must be 3 positive voxel sizes in mm, got [0.0, 0.0, 0.0]"),
    (["--spacing", "2", "nan", "2"], "--spacing / data.spacing must be 3 positive voxel sizes in mm"),
    (["--channels", "0"], "--channels must be a positive integer (1 for grey-scale, 3 for RGB), got 0"),
    (["--channels", "-2"], "--channels must be a positive integer"),
])
def test_cli_prepare_refuses_sizes_a_run_would_refuse(cohort_copy, tmp_path, capsys, flags, words):
    """`data prepare` took a zero-sized axis, a zero/NaN spacing or a channel count < 1 without a check: a
    traceback, a cache built with `0` meaning 'keep', or a printed `use it with` hint that `medssl pretrain`
    then refused (data.spacing must be positive). Each is now a one-line error, and nothing is written."""
    out = tmp_path / "c"
    args = ["data", "prepare", "synthetic", "--root", str(cohort_copy), "--out", str(out), *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not out.exists()


def test_integer_labels_are_coded_by_value_so_codes_are_the_published_class_indices():
    from medssl.data.manifest import Record

    records = [Record(path=f"{i}.npz", subject=f"s{i}", label=str(c), site=site)
               for i, (c, site) in enumerate([(10, "b"), (2, "a"), (0, "c"), (1, "a")])]
    coder = MetadataCoder(records)
    assert coder.vocab["label"] == ["0", "1", "2", "10"] and coder.code("label", "10") == 3  # was 1 ("10" < "2")
    assert coder.vocab["site"] == ["a", "b", "c"]


def test_a_cache_slice_that_is_not_the_first_rows_reaches_workers_with_its_own_rows(tmp_path):
    """Only ``whole[:n]`` may go by file name (re-opened as the first n rows); ``whole[3:6]`` shares the
    file's offset attribute but starts 3 rows in, so it must be copied, not re-opened as rows 0-2."""
    path = tmp_path / "images.npy"
    np.save(path, np.arange(8, dtype=np.float16).reshape(8, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float16))
    whole = np.load(path, mmap_mode="r")
    recs = [Record(path=f"s{i}.nii.gz", subject=f"s{i}") for i in range(8)]
    for images, first in ((whole[3:6], 3.0), (whole[:3], 0.0), (whole[3:6][1:], 4.0)):
        ds = CachedScans(images, recs[:len(images)], list(range(len(images))), MetadataCoder(recs))
        back = pickle.loads(pickle.dumps(ds))
        assert float(back[0]["image"][0, 0, 0]) == first == float(ds[0]["image"][0, 0, 0])


def test_integer_codes_do_not_depend_on_the_order_values_are_met():
    """'1' and '01' (or '+1') are one number but two labels: the sort key must still tell them apart, or their
    codes follow the set's hash order (another order per process: DDP ranks, pretraining vs evaluation).
    A value that looks like digits but is no int ('²') is text, not a crash."""
    def vocab(labels):
        return MetadataCoder([Record(path=f"{i}.npz", subject=f"s{i}", label=v) for i, v in enumerate(labels)]).vocab

    for values in (["1", "01", "2"], ["01", "1", "2"], ["2", "+1", "1"], ["1", "2", "+1"]):
        assert sorted(values, key=natural_order) == sorted(values[::-1], key=natural_order)
    assert vocab(["10", "²", "2"])["label"] == ["2", "10", "²"]


def test_preload_ram_holds_its_own_copy_of_the_cache(tmp_path):
    """data.preload=ram is 'one copy in memory': np.ascontiguousarray of a C-ordered memmap is only a view
    of the mapped file (every read still went to the page cache / disk). The copy keeps its values when the
    file is rewritten."""
    path = tmp_path / "images.npy"
    np.save(path, np.arange(24, dtype=np.float16).reshape(4, 1, 2, 3))
    mapped = np.load(path, mmap_mode="r+")
    held = preload(mapped, "ram", torch.device("cpu"))
    assert not np.shares_memory(held, mapped) and held.flags.owndata
    expected = np.array(mapped)
    mapped[:] = 0
    mapped.flush()
    np.testing.assert_array_equal(held, expected)


def test_a_cache_rebuilt_in_place_never_reaches_workers_as_the_old_rows(tmp_path):
    """Workers re-open the cache by file name every epoch. When another build has since replaced images.npy
    (os.replace: a new file, same shape, other scans in those rows) the dataset goes by value, and a
    replacement between pickling and unpickling is refused, never read as this run's rows."""
    path = tmp_path / "images.npy"
    np.save(path, np.arange(6, dtype=np.float16).reshape(6, 1, 1, 1))
    recs = [Record(path=f"s{i}.nii.gz", subject=f"s{i}") for i in range(6)]
    ds = CachedScans(np.load(path, mmap_mode="r")[:4], recs[:4], [0, 1, 2, 3], MetadataCoder(recs))
    blob = pickle.dumps(ds)

    def rebuild():  # what build_cache does for other scans in the same folder
        np.save(tmp_path / ".next-images.npy", np.full((6, 1, 1, 1), 99, dtype=np.float16))
        os.replace(tmp_path / ".next-images.npy", path)

    rebuild()
    with pytest.raises(RuntimeError, match="changed while the dataset was being sent to a worker"):
        pickle.loads(blob)
    with pytest.warns(UserWarning, match="was replaced by another build"):
        back = pickle.loads(pickle.dumps(ds))
    assert [float(back[i]["image"].flatten()[0]) for i in range(4)] == [0, 1, 2, 3]


def test_a_channel_count_mismatch_says_which_setting_to_change(tmp_path):
    """`data prepare --channels 3` on grayscale PNGs: every file failed with 'fix or remove the file' and the run
    keys only; the message names --channels and the reader option that reads PNG/DICOM as RGB."""
    from PIL import Image

    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "a.png")
    card = DataCard(name="p", modality="DX", dimensionality=2, files="*.png", path_regex=r"(?P<subject>\w+)\.png",
                    preprocessing={"shape": [8, 8], "normalise": "none"})
    with pytest.raises(BadFileError, match=r"expected 2D with 3 .*--channels.*reader_options \{color: rgb\}"):
        prepare_card(card, tmp_path / "c", root=tmp_path, channels=3, progress=False)
    card.reader_options = {"color": "rgb"}  # the fix it names
    assert prepare_card(card, tmp_path / "c", root=tmp_path, channels=3, progress=False).cache.images.shape == (
        1, 3, 8, 8)


@pytest.mark.parametrize("where", ["prepare", "run"])
def test_an_output_folder_holding_the_cards_table_is_refused_not_overwritten(cohort_copy, where):
    """A card whose table is `manifest.tsv`, prepared (or pretrained) with the data root as output folder: medssl's
    own manifest.tsv (path, subject, split, ...) replaced the user's table without a word, which the next read
    of the card then failed on. The outputs that would land on one of the card's input files are refused first."""
    from dataclasses import replace

    from medssl.api import prepare_data

    (cohort_copy / "participants.tsv").rename(cohort_copy / "manifest.tsv")
    table = (cohort_copy / "manifest.tsv").read_text()
    card = replace(load_card("synthetic"), manifest="manifest.tsv")
    with pytest.raises(ConfigError, match=r"manifest\.tsv.*card synthetic's table.*another"):
        if where == "prepare":
            prepare_card(card, cohort_copy, root=cohort_copy, shape=[8, 8, 8])
        else:
            card_file = cohort_copy.parent / "card.yaml"
            text = load_card("synthetic").source_file
            card_file.write_text(open(text).read().replace("participants.tsv", "manifest.tsv"))
            cfg = load_config(None, [f"data.card={card_file}", f"data.root={cohort_copy}", "data.shape=[8,8,8]",
                               "augment.crop_size=[8,8,8]"])
            prepare_data(cfg, cohort_copy, progress=False)
    assert (cohort_copy / "manifest.tsv").read_text() == table
    assert not (cohort_copy / "images.npy").exists()


def test_the_overwrite_refusal_names_which_input_would_be_lost(cohort_copy):
    """The refusal said "the card's table" for every clashing input; a split list named manifest.tsv is named as one."""
    from dataclasses import replace

    (cohort_copy / "manifest.tsv").write_text("sub-0001\n")
    card = replace(load_card("synthetic"), split_files={"test": "manifest.tsv"})
    with pytest.raises(ConfigError, match=r"overwrite card synthetic's split list \(test\)"):
        prepare_card(card, cohort_copy, root=cohort_copy, shape=[8, 8, 8])
    assert (cohort_copy / "manifest.tsv").read_text() == "sub-0001\n"


def test_data_prepare_replaces_its_list_of_skipped_files_whole_or_not_at_all(cohort_copy, tmp_path, disk_full_on):
    """`data prepare` wrote skipped_files.json in place: a write failing midway (full disk, kill) left half a
    list. A second prepare with one more bad file whose list write fails keeps the first list, whole."""
    card, out = load_card("synthetic"), tmp_path / "c"
    (cohort_copy / "sub-0003" / "anat" / "sub-0003_T1w.nii.gz").unlink()
    prepare_card(card, out, root=cohort_copy, shape=[8, 8, 8], on_bad_file="skip", progress=False)
    before = (out / "skipped_files.json").read_text()
    (cohort_copy / "sub-0005" / "anat" / "sub-0005_T1w.nii.gz").unlink()
    disk_full_on("skipped_files")
    with pytest.raises(OSError, match="No space left"):
        prepare_card(card, out, root=cohort_copy, shape=[8, 8, 8], on_bad_file="skip", progress=False)
    assert (out / "skipped_files.json").read_text() == before
