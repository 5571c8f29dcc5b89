"""Patient identifiers planted in DICOM headers reach no file written and no output printed by
`data check`, `data prepare` and a short 2D pretraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medssl.api import pretrain
from medssl.cli import main
from medssl.config import load_config

PLANTED = {
    "PatientName": "Qzxvbn^Wyrmtrude", "PatientID": "PID-88123-QZ", "PatientBirthDate": "19230411",
    "AccessionNumber": "ACC77Q9912", "InstitutionName": "Saint Qzxv Hospital", "ReferringPhysicianName": "Drwy^Plonk",
    "StudyID": "STQ4471", "OperatorsName": "Oprq^Vantle", "StudyDescription": "Qzxv follow-up",
}
SECRETS = sorted({v for v in PLANTED.values()} | {p for v in PLANTED.values() for p in v.split("^")})
N_IMAGES, SHAPE = 6, 32


def _source_dicom(shared_root: Path) -> Path:
    """A real 2D radiograph (NIH ChestX-ray14 DX) when ../shared is present, else pydicom's CT slice."""
    nih = shared_root / "data" / "dicom_cxr_nih_dx"
    found = sorted(nih.glob("*.dcm")) if nih.is_dir() else []
    return found[0] if found else Path(get_testdata_file("CT_small.dcm"))


def _make_dataset(src: Path, root: Path) -> float:
    """N copies with planted identifiers and shifted pixels in root/sub-XX/image.dcm; returns a spacing (mm)
    that brings the image to about SHAPE pixels."""
    for i in range(N_IMAGES):
        ds = pydicom.dcmread(src)
        for key, value in PLANTED.items():
            setattr(ds, key, value)
        ds.PatientComments = "contact " + PLANTED["PatientName"]
        arr = ds.pixel_array
        ds.PixelData = np.roll(arr, 7 * i, axis=1).astype(arr.dtype).tobytes()
        (root / f"sub-{i:02d}").mkdir(parents=True)
        ds.save_as(root / f"sub-{i:02d}" / "image.dcm")
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    spacing = [float(s) for s in getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None) or [1, 1]]
    return round(int(ds.Columns) * spacing[0] / SHAPE, 3)


def _scan_outputs(folders: list[Path]) -> list[Path]:
    files = [f for d in folders for f in d.rglob("*") if f.is_file()]
    for f in files:
        blob = f.read_bytes()
        for secret in SECRETS:
            for encoded in (secret.encode(), secret.encode("utf-16-le")):
                assert encoded not in blob, f"{secret!r} found in {f}"
    return files


def test_planted_identifiers_never_leave_the_dicom_files(tmp_path, capfd, shared_root):
    src = _source_dicom(shared_root)
    data = tmp_path / "cxr"
    spacing = _make_dataset(src, data)
    with pytest.raises(AssertionError, match="found in"):  # the scan does find them where they are
        _scan_outputs([data])
    card = tmp_path / "cxr_card.yaml"
    card.write_text(
        "name: cxr_phi_test\nmodality: DX\ndimensionality: 2\nfiles: 'sub-*/*.dcm'\n"
        "path_regex: '(?P<subject>sub-\\d+)/'\nreader_options: {voi: auto}\n"
        f"preprocessing: {{shape: [{SHAPE}, {SHAPE}], spacing: [{spacing}, {spacing}], normalise: minmax}}\n"
        "licence: test\ncitation: test\nobtain: test\nphi: planted identifiers\n")
    cache, run = tmp_path / "cache", tmp_path / "run"

    assert main(["data", "check", str(card), "--root", str(data), "--strict"]) == 0
    assert main(["data", "prepare", str(card), "--root", str(data), "--out", str(cache)]) == 0
    cfg = load_config(None, [
        f"data.card={card}", f"data.root={data}", f"data.cache_dir={cache}", f"data.shape=[{SHAPE},{SHAPE}]",
        f"data.spacing=[{spacing},{spacing}]", "data.normalise=minmax", "data.test_fraction=0.34",
        "encoder.spatial_dims=2", "encoder.options.width=8", "augment.preset=chest_xray", "augment.crop_size=[28,28]",
        "method.name=simclr", "train.epochs=1", "train.batch_size=4", "train.progress=false", f"output_dir={run}"])
    pretrain(cfg, progress=False)

    out = capfd.readouterr()
    assert "result: OK" in out.out and "6 preprocessed now" in out.out
    printed = out.out + out.err
    for secret in SECRETS:
        assert secret not in printed, f"{secret!r} printed"
    written = _scan_outputs([cache, run])
    names = {f.name for f in written}
    assert {"images.npy", "index.json", "manifest.tsv", "config.yaml", "train_summary.json"} <= names
    assert any(f.suffix == ".pt" for f in written)
    images = np.load(cache / "images.npy", mmap_mode="r")
    assert images.shape == (N_IMAGES, 1, SHAPE, SHAPE) and float(images.max()) == pytest.approx(1.0, abs=1e-3)
