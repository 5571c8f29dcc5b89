"""A prepared cache reused by runs: skipped-file lists kept true, the hint of `data prepare`, caches of other settings refused, a
card's voxel size part of the settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medssl.cli import main
from medssl.config import ConfigError, load_config
from medssl.data.card import DataCard, load_card
from medssl.data.prepare import make_loader, make_preprocessor, prepare_card
from medssl.io.errors import BadFileError


def test_a_fixed_file_is_no_longer_listed_as_skipped_after_a_rerun(cohort_copy, tmp_path):
    """skipped_files.json was only ever written: after the bad file was fixed and prepare (or the run) rerun,
    the cache held the scan but the old list still said it was skipped."""
    from medssl.api import prepare_data

    scan = sorted(cohort_copy.glob("sub-*/anat/*_T1w.nii.gz"))[3]
    good = scan.read_bytes()
    scan.write_bytes(good[: len(good) // 2])
    card, out, run = load_card("synthetic"), tmp_path / "c", tmp_path / "run"
    cfg = load_config(None, [f"data.root={cohort_copy}", "data.shape=[8,8,8]", "augment.crop_size=[8,8,8]",
                             "data.on_bad_file=skip", f"output_dir={run}"])
    res = prepare_card(card, out, root=cohort_copy, shape=[8, 8, 8], on_bad_file="skip", progress=False)
    prepare_data(cfg, run, progress=False)
    for listing in (out / "skipped_files.json", run / "skipped_files.json"):
        assert [s["path"] for s in json.loads(listing.read_text())] == [str(scan)]
    scan.write_bytes(good)  # fixed: its size and mtime change, so the rerun preprocesses it
    res = prepare_card(card, out, root=cohort_copy, shape=[8, 8, 8], on_bad_file="skip", progress=False)
    assert res.cache.valid.all() and not res.cache.skipped
    assert not prepare_data(cfg, run, progress=False).skipped
    assert not (out / "skipped_files.json").exists() and not (run / "skipped_files.json").exists()


def test_the_hint_after_a_skip_build_is_a_run_that_uses_the_cache(cohort_copy, tmp_path, capsys):
    """`data prepare --on-bad-file skip` prints the overrides of a run that reuses its cache; that run must
    take the skipped files as the build did (a strict run is refused: the refusal says how to proceed)."""
    from medssl.api import prepare_data

    bad = sorted(cohort_copy.glob("sub-*/anat/*_T1w.nii.gz"))[3]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    cache = tmp_path / "c"
    assert main(["data", "prepare", "synthetic", "--root", str(cohort_copy), "--out", str(cache),
                 "--shape", "16", "16", "16", "--on-bad-file", "skip"]) == 0
    hint = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("use it with:"))
    overrides = [w for w in hint.split() if "=" in w] + ["augment.crop_size=[12,12,12]"]
    assert "data.on_bad_file=skip" in overrides
    (tmp_path / "run").mkdir()
    data = prepare_data(load_config(None, overrides), tmp_path / "run", progress=False)
    assert len(data.train) + len(data.test) == 39 and len(data.skipped) == 1
    strict = [o for o in overrides if not o.startswith("data.on_bad_file=")]
    with pytest.raises(BadFileError, match=r"data.on_bad_file=skip to train on the other scans"):
        prepare_data(load_config(None, strict), tmp_path / "run", progress=False)


def test_a_run_with_other_settings_refuses_a_prepared_cache_instead_of_replacing_it(cohort_copy, tmp_path, capsys):
    """Forgetting one of the hint's overrides (here data.spacing) used to rebuild the prepared cache in place,
    silently: the run trained on other preprocessing and the cache other runs reuse was gone."""
    import hashlib

    from medssl.api import prepare_data

    cache = tmp_path / "c"
    assert main(["data", "prepare", "synthetic", "--root", str(cohort_copy), "--out", str(cache),
                 "--shape", "12", "12", "12", "--spacing", "4", "4", "4", "--normalise", "minmax"]) == 0
    hint = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("use it with:"))
    overrides = [w for w in hint.split() if "=" in w] + ["augment.crop_size=[8,8,8]", "train.batch_size=8",
                                                         "encoder.options.width=8", "train.progress=false"]

    def digest() -> dict:
        return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(cache.iterdir()) if p.is_file()}

    before = digest()
    forgot = [o for o in overrides if not o.startswith("data.spacing=")]
    assert main(["pretrain", *forgot, f"output_dir={tmp_path / 'run'}", "train.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "data.spacing: [4.0, 4.0, 4.0] there, [] in this run" in err
    assert "pass data.shape=[12,12,12] data.spacing=[4.0,4.0,4.0] data.normalise=minmax" in err
    assert "another data.cache_dir" in err
    assert digest() == before and not (tmp_path / "run").exists()  # nothing replaced, nothing written
    with pytest.raises(ConfigError, match=r"data.normalise: minmax there, zscore in this run"):
        prepare_data(load_config(None, [*overrides, "data.normalise=zscore"]), tmp_path, progress=False)
    assert digest() == before
    data = prepare_data(load_config(None, overrides), tmp_path, progress=False)  # the hint as printed: reused
    assert data.images.shape == (40, 1, 12, 12, 12) and digest() == before


def test_cache_settings_of_another_format_are_rebuilt_not_refused(tmp_path):
    """Only settings both caches record are compared: an index written with other keys (another medssl version)
    is rebuilt as before, while a recorded setting that differs is named."""
    import json

    from medssl.data.prepare import refuse_other_settings

    card = load_card("synthetic")
    loader = make_loader(card, make_preprocessor(card, [8, 8, 8]))
    (tmp_path / "index.json").write_text(json.dumps({"settings": json.dumps({"cache_format": 0})}))
    refuse_other_settings(tmp_path, loader)  # nothing comparable: no error
    (tmp_path / "index.json").write_text(json.dumps({"settings": json.dumps({"preprocessing": {"shape": [9, 9, 9]}})}))
    with pytest.raises(ConfigError, match=r"data.shape: \[9, 9, 9\] there, \[8, 8, 8\] in this run.*pass "
                                          r"data.shape=\[9,9,9\];"):
        refuse_other_settings(tmp_path, loader)


def test_pretrain_into_the_data_root_holding_the_cards_table_writes_nothing_there(cohort_copy):
    """The refusal of an output folder whose manifest.tsv is the card's table came after pretrain had made the run
    folder and written config.yaml into it (the data root here), although docs/data.md says it comes before
    anything is written. Now nothing is written: the data root is left as it was."""
    from medssl.api import pretrain

    (cohort_copy / "participants.tsv").rename(cohort_copy / "manifest.tsv")
    card_file = cohort_copy.parent / "card.yaml"
    card_file.write_text(open(load_card("synthetic").source_file).read().replace("participants.tsv", "manifest.tsv"))
    before = sorted(p.name for p in cohort_copy.iterdir())
    cfg = load_config(None, [f"data.card={card_file}", f"data.root={cohort_copy}", "data.shape=[8,8,8]",
                             "augment.crop_size=[8,8,8]", f"output_dir={cohort_copy}", "train.device=cpu"])
    with pytest.raises(ConfigError, match=r"manifest\.tsv.*card synthetic's table"):
        pretrain(cfg, progress=False)
    assert sorted(p.name for p in cohort_copy.iterdir()) == before  # no config.yaml, cache or manifest written



def _voxel_size_card(root, kind: str, voxel_mm: float) -> DataCard:
    """A 3-scan card whose files give no voxel size of their own, so the card sets it: PNG ``reader_options.spacing``
    or npy ``geometry.spacing``; the preprocessing resamples to 1 mm, so the cached arrays depend on it. The files
    are written once (rewriting them would change their signatures and rebuild the cache for that reason)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(3):
        pixels, path = rng.integers(0, 256, size=(8, 8), dtype=np.uint8), root / f"s{i}.{kind}"
        if path.exists():
            continue
        if kind == "png":
            Image.fromarray(pixels).save(path)
        else:
            np.save(path, pixels[None].astype(np.float32))
    table = root / "t.tsv"
    if not table.exists():
        table.write_text("id\n" + "".join(f"s{i}\n" for i in range(3)))
    where = {"reader_options": {"spacing": voxel_mm}} if kind == "png" else {"geometry": {"spacing": [voxel_mm] * 2}}
    return DataCard(name=kind, modality="DX", dimensionality=2, format=kind, manifest="t.tsv", columns={"subject": "id"},
                    path_template=f"{{id}}.{kind}", preprocessing={"shape": [8, 8], "spacing": [1.0, 1.0],
                                                                   "normalise": "none"}, **where)


@pytest.mark.parametrize("kind", ["png", "npy"])
def test_a_card_that_changes_the_voxel_size_rebuilds_the_cache(tmp_path, kind):
    """The card's reader_options and npy geometry are cache settings: preparing the same files into the same cache
    folder with another voxel size gives the rows a fresh cache of those settings holds, not the old rows."""
    root = tmp_path / "data"
    root.mkdir()
    first = prepare_card(_voxel_size_card(root, kind, 1.0), tmp_path / "c", root=root, progress=False)
    old = np.array(first.cache.images)
    assert prepare_card(_voxel_size_card(root, kind, 1.0), tmp_path / "c", root=root, progress=False).cache.n_built == 0
    again = prepare_card(_voxel_size_card(root, kind, 0.5), tmp_path / "c", root=root, progress=False)
    fresh = prepare_card(_voxel_size_card(root, kind, 0.5), tmp_path / "fresh", root=root, progress=False)
    assert not np.array_equal(np.array(fresh.cache.images), old)  # 0.5 mm pixels resampled to 1 mm: half the size
    assert again.cache.n_built == 3 and np.array_equal(np.array(again.cache.images), np.array(fresh.cache.images))


def test_a_float32_npy_scan_is_read_into_memory_and_preprocessed_without_warning(tmp_path):
    """A float32 .npy was handed on as np.load's read-only memmap: torch.from_numpy in the
    preprocessing warned 'The given NumPy array is not writable' for every scan, and the Volume
    kept the file open. The scan is now read into a writable in-memory array (values unchanged)."""
    import warnings

    from medssl.data.npy import read_npy
    from medssl.transforms.preprocess import Preprocessor

    scan = np.random.default_rng(0).normal(size=(1, 6, 7, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", scan)
    vol = read_npy(tmp_path / "a.npy", np.eye(4))
    assert vol.array.flags.writeable and not isinstance(vol.array, np.memmap)
    np.testing.assert_array_equal(vol.array, scan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = Preprocessor(shape=[6, 7, 8], normalise="none")(vol)
    np.testing.assert_allclose(out, scan, atol=1e-6)
