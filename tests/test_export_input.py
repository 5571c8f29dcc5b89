"""An export's ``input`` spec reproduces medssl's own embedding of a scan (docs/encoders.md, "Export").

Checked on a 2D PNG run, where the trap is: medssl's reader transposes the stored pixel array and divides 8-bit
values by 255, which ``normalise: none`` in ``encoder.json`` does not say by itself.
"""

import json

import numpy as np
import pytest
import torch
from monai.networks.nets import ResNet
from PIL import Image
from safetensors.torch import load_file

import medssl
from medssl.api import pretrain
from medssl.config import load_config
from medssl.data.manifest import read_manifest
from medssl.export import export_run
from medssl.io import read_image
from medssl.transforms.preprocess import Preprocessor


@pytest.fixture(scope="module")
def png_export(tmp_path_factory):
    """A 1-step 2D run on 8 PNGs of 20×12 pixels (cropped to 16 along the rows, padded to 16 down the columns),
    ``normalise: none``, exported: ``(run, export)``."""
    tmp = tmp_path_factory.mktemp("png_export")
    rng = np.random.default_rng(0)
    rows = ["file,id"]
    for i in range(8):
        yy, xx = np.mgrid[0:12, 0:20]
        img = (120 + 80 * np.sin(xx / (2 + i)) * np.cos(yy / 3) + rng.normal(0, 10, (12, 20))).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(tmp / f"img{i}.png")  # 12 rows × 20 columns
        rows.append(f"img{i}.png,s{i}")
    (tmp / "table.csv").write_text("\n".join(rows) + "\n")
    (tmp / "card.yaml").write_text("name: pngs\nmodality: DX\ndimensionality: 2\nmanifest: table.csv\n"
                                   "columns: {path: file, subject: id}\n")
    cfg = load_config(overrides=[f"data.card={tmp / 'card.yaml'}", f"data.root={tmp}", f"output_dir={tmp / 'run'}",
                                 "data.shape=[16,16]", "data.normalise=none", "encoder.spatial_dims=2",
                                 "encoder.name=resnet10", "encoder.options={width: 4, conv1_stride: 1}",
                                 "augment.preset=none", "augment.crop_size=[16,16]", "train.batch_size=4",
                                 "train.epochs=1", "train.device=cpu", "train.progress=false"])
    run = pretrain(cfg, progress=False)
    return run, export_run(run, tmp / "export")


def test_the_documented_recipe_reproduces_medssls_input_and_embedding(png_export):
    run, export = png_export
    spec = json.loads((export / "encoder.json").read_text())
    inp = spec["input"]
    assert (inp["normalise"], inp["orientation"], inp["shape"]) == ("none", "file", [16, 16])
    pre = Preprocessor(shape=inp["shape"], spacing=inp["spacing_mm"] or [], normalise=inp["normalise"],
                       orientation="" if inp.get("orientation", "file") == "file" else inp["orientation"])
    records = read_manifest(run / "manifest.tsv")
    cache = np.load(run / "cache" / "images.npy", mmap_mode="r")  # rows in manifest order, float16
    encoder = medssl.load_encoder(export)
    net = ResNet(**spec["monai"]["kwargs"]).eval()
    net.load_state_dict(load_file(export / "encoder.safetensors"), strict=True)
    for i in range(3):
        x = torch.from_numpy(pre(read_image(records[i].path)))[None]  # (1, 1, 16, 16)
        cached = torch.from_numpy(np.asarray(cache[i], dtype=np.float32))[None]
        torch.testing.assert_close(x, cached, atol=1e-3, rtol=0)  # float16 rounding of values in [0, 1]
        raw = np.asarray(Image.open(records[i].path), dtype=np.float32)  # (12 rows, 20 columns), 0-255
        assert raw.shape == (12, 20) and x.shape[-2:] == (16, 16)
        assert np.allclose(raw[:, 2:18].T / 255, x[0, 0, :, 2:14].numpy(), atol=1e-6)  # transposed, ÷255
        with torch.no_grad():
            ref = encoder(cached)
            torch.testing.assert_close(encoder(x), ref, atol=1e-3 * float(ref.abs().max()), rtol=0)
            torch.testing.assert_close(net(x), encoder(x), atol=1e-5, rtol=1e-5)


def test_a_2d_export_says_how_to_read_a_real_pneumoniamnist_png_without_medssl(tmp_path):
    """encoder.json's ``input.pixels`` (layout, divisor per bit depth) rebuilds medssl's input from a PNG with
    PIL / numpy only: PneumoniaMNIST images saved as PNGs, a 1-step run on them, its export, and the embedding of
    the rebuilt input (plain MONAI ResNet) equal to medssl's within float16 rounding; MONAI's own LoadImage
    (PILReader) returns the same transposed layout, unscaled."""
    from monai.transforms import LoadImage

    from shared_data import shared_path

    with np.load(shared_path("data", "medmnist_pneumoniamnist_reconstructed", "pneumoniamnist.npz")) as npz:
        images = npz["test_images"][:8]  # (8, 28, 28) uint8, rows × columns
    rows = ["file,id"]
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"xr{i}.png")
        rows.append(f"xr{i}.png,s{i}")
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "card.yaml").write_text("name: pneumonia_png\nmodality: DX\ndimensionality: 2\nmanifest: table.csv\n"
                                        "columns: {path: file, subject: id}\n")
    cfg = load_config(overrides=[f"data.card={tmp_path / 'card.yaml'}", f"data.root={tmp_path}",
                                 f"output_dir={tmp_path / 'run'}", "data.shape=[28,28]", "data.normalise=none",
                                 "encoder.spatial_dims=2", "encoder.name=resnet10",
                                 "encoder.options={width: 4, conv1_stride: 1}", "augment.preset=none",
                                 "augment.crop_size=[28,28]", "train.batch_size=4", "train.epochs=1",
                                 "train.device=cpu", "train.progress=false"])
    run = pretrain(cfg, progress=False)
    export = export_run(run, tmp_path / "export")
    spec = json.loads((export / "encoder.json").read_text())
    inp = spec["input"]
    assert (inp["normalise"], inp["shape"], inp["pixels"]["layout"]) == ("none", [28, 28], "transpose")
    net = ResNet(**spec["monai"]["kwargs"]).eval()
    net.load_state_dict(load_file(export / "encoder.safetensors"), strict=True)
    records = read_manifest(run / "manifest.tsv")
    cache = np.load(run / "cache" / "images.npy", mmap_mode="r")  # rows in manifest order, float16
    encoder = medssl.load_encoder(export)
    for i in range(3):
        pixels = np.asarray(Image.open(records[i].path))  # (28 rows, 28 columns) uint8, as stored
        assert np.array_equal(pixels, images[int(records[i].subject[1:])])
        bits = str(8 * pixels.dtype.itemsize)
        x = (pixels.T if inp["pixels"]["layout"] == "transpose" else pixels) / inp["pixels"]["divisor_by_bits"][bits]
        x = torch.from_numpy(x.astype(np.float32))[None, None]  # (1, 1, 28, 28)
        monai_read = np.asarray(LoadImage(image_only=True, reader="PILReader")(records[i].path))
        assert np.array_equal(monai_read, pixels.T.astype(np.float32))  # MONAI: transposed too, values 0-255
        cached = torch.from_numpy(np.asarray(cache[i], dtype=np.float32))[None]
        torch.testing.assert_close(x, cached, atol=1e-3, rtol=0)
        with torch.no_grad():
            ref = encoder(cached)
            torch.testing.assert_close(net(x), ref, atol=1e-3 * float(ref.abs().max()), rtol=0)
    wide = images[0].astype(np.uint16) * 256 + 7  # a 16-bit PNG (low byte set): its divisor is 65535
    Image.fromarray(wide).save(tmp_path / "wide.png")
    np.testing.assert_allclose(read_image(tmp_path / "wide.png").array[0],
                               wide.T / inp["pixels"]["divisor_by_bits"]["16"], rtol=0, atol=1e-7)


@pytest.mark.parametrize("spacing", [[], [2.0, 1.5, 3.0]])
def test_the_input_spec_gives_the_spacing_and_shape_the_run_preprocessed_to(spacing):
    """``input.spacing_mm`` is the voxel size the run resampled every scan to (None: each scan's own grid), the one
    its cache was built with (``api`` builds the Preprocessor from the same config): an export that said None for a
    2 mm run would have users feed scans at their native resolution."""
    from medssl.data.card import load_card
    from medssl.data.prepare import make_preprocessor
    from medssl.export import input_spec_from_config

    cfg = load_config(None, ["data.shape=[24,20,16]", "augment.crop_size=[16,16,16]",
                             f"data.spacing=[{','.join(map(str, spacing))}]"])
    spec = input_spec_from_config(cfg)
    pre = make_preprocessor(load_card(cfg.data.card), cfg.data.shape, cfg.data.spacing, cfg.data.normalise)
    assert spec["spacing_mm"] == (spacing or None) == (pre.spacing or None)
    assert spec["shape"] == pre.shape == [24, 20, 16] and spec["orientation"] == pre.orientation == "RAS"


def test_the_input_spec_records_the_runs_channels_normalisation_and_crop():
    """The channels, intensity normalisation and training crop in ``input`` are the run's own (config values other
    than the defaults): an export of a 2-channel run that said 1 channel would have users feed it one."""
    from medssl.export import input_spec_from_config

    cfg = load_config(None, ["encoder.in_channels=2", "data.normalise=minmax", "data.shape=[24,24,24]",
                             "augment.crop_size=[20,18,16]"])
    spec = input_spec_from_config(cfg)
    assert (spec["spatial_dims"], spec["in_channels"], spec["normalise"]) == (3, 2, "minmax")
    assert (spec["shape"], spec["crop_size"]) == ([24, 24, 24], [20, 18, 16])
