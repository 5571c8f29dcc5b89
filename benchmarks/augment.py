"""Speed (and a visual check) of the medssl batch view pipeline.

CPU, one core: per-view time of the medssl batch pipeline vs the equivalent MONAI Compose
(RandSpatialCrop, RandFlip, RandAffine, RandBiasField, RandAdjustContrast,
RandGaussianSmooth, RandGaussianNoise, RandCoarseDropout, same probabilities) applied
sample by sample to the same real IXI T1 volumes (z-scored, resized to ``--shape``).
CUDA: views/s of ``--crop`` views from ``--shape`` volumes at ``--batch`` (one view and
two views per sample), after warm-up, with ``torch.cuda.synchronize`` around the timing.

    python benchmarks/augment.py                      # CPU comparison (full size)
    python benchmarks/augment.py --quick              # small CI smoke test
    python benchmarks/augment.py --device cuda --batch 64
    python benchmarks/augment.py --grid docs/img/views.png --no-speed
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medssl.transforms.views import build_view_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_runs import command_line, machine  # noqa: E402 - next to this script

SHARED = Path(os.environ.get("MEDSSL_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))
IXI_GLOB = str(SHARED / "data" / "ixi_t1_hh_2mm" / "images" / "*.nii.gz")
CXR_DIR = SHARED / "data" / "dicom_cxr_nih_dx"

#: The transforms both pipelines run, with brain_mri probabilities (fixed-size crop).
COMPARED = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.5, flip_axes=(0,), affine_prob=0.5,
                rotate=10.0, scale=(0.9, 1.1), bias_prob=0.3, bias_coeff=0.3, gamma_prob=0.3, gamma=(0.7, 1.5),
                blur_prob=0.2, blur_sigma=(0.5, 1.0), noise_prob=0.3, noise_std=(0.0, 0.1), dropout_prob=0.3,
                dropout_holes=4, dropout_size=(0.1, 0.25), dropout_fill=0.0)


def zscore_head(vol: np.ndarray) -> np.ndarray:
    """Z-score inside a crude head mask (voxels above the volume mean), background kept below."""
    mask = vol > vol.mean()
    return ((vol - vol[mask].mean()) / (vol[mask].std() + 1e-6)).astype(np.float32)


def load_ixi(n: int) -> list[torch.Tensor]:
    """``n`` real IXI T1 volumes as (1, X, Y, Z) z-scored tensors, RAS+ (axis 0 = left-right)."""
    from medssl.io import read_nifti
    from medssl.transforms.preprocess import to_canonical

    files = sorted(glob.glob(IXI_GLOB))[:n]
    if not files:
        raise SystemExit(f"no IXI volumes at {IXI_GLOB}; set MEDSSL_SHARED to the shared data folder")
    return [torch.from_numpy(zscore_head(to_canonical(read_nifti(f)).array[0]))[None] for f in files]


def load_cxr(size: int = 256) -> torch.Tensor:
    """The real NIH chest X-ray DICOM as (1, X, Y) = (1, size, size) in [0, 1] (MONOCHROME2),
    in the medssl Volume convention (axis 0 = columns, axis 1 = rows)."""
    path = sorted(CXR_DIR.glob("*.dcm"))[0]
    try:
        from medssl.io import read_image

        img = read_image(path).array[0].astype(np.float32)
    except ImportError:  # reader not available: minimal pydicom handling
        import pydicom

        ds = pydicom.dcmread(path)
        img = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
        if ds.PhotometricInterpretation == "MONOCHROME1":
            img = img.max() - img
        img = img.T  # (rows, columns) -> (X, Y)
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def resize_batch(vols: list[torch.Tensor], shape, batch: int, device="cpu") -> torch.Tensor:
    """(batch, 1, *shape): the volumes resized once each, then repeated to fill the batch."""
    unique = [F.interpolate(v[None].to(device), size=tuple(shape), mode="trilinear", align_corners=False)[0]
              for v in vols[:batch]]
    return torch.stack([unique[i % len(unique)] for i in range(batch)]).contiguous()


def stage_times(pipe, x: torch.Tensor, g: torch.Generator, sync, clock=time.perf_counter) -> dict:
    """Seconds per batch of the fused spatial step and of each later transform (one draw)."""
    from medssl.transforms.spatial import fused_spatial

    params = pipe.sample_params(x.shape, g, x.device)
    n = len(pipe.spatial)
    moved = [int(p["apply"].sum()) for k, p in params.items() if k.endswith(("affine", "elastic"))]
    sync()
    t0 = clock()
    y = fused_spatial(x, pipe.crop, pipe.spatial, [params[f"{i}:{t.name}"] for i, t in enumerate(pipe.spatial)],
                      params["crop"], 1, pipe.mode, pipe.padding_mode)
    sync()
    out = {f"spatial ({'+'.join(map(str, moved)) or 0} moved/{x.shape[0]})": clock() - t0}
    for i, t in enumerate(pipe.others):
        p = params[f"{n + i}:{t.name}"]
        t0 = clock()
        y = t.apply(y, p, inplace=True)
        sync()
        out[f"{t.name} ({int(p['apply'].sum())}/{x.shape[0]})"] = clock() - t0
    return out


def resampler_times(x: torch.Tensor, crop, repeats: int) -> tuple[float, float]:
    """CPU seconds of one interpolated view (10° rotations, zoom 1.05) of ``x[0]``: 3D
    ``grid_sample`` on the grid of the map vs medssl's ``affine_trilinear_`` (same values)."""
    from medssl.transforms.resample import sampling_grid
    from medssl.transforms.spatial import rotation_matrix
    from medssl.transforms.trilinear import affine_trilinear_

    A = rotation_matrix(torch.full((1, 3), math.radians(10.0)), 3) / 1.05
    t = torch.tensor([[2.0, -3.0, 1.0]])
    out = torch.empty((1, x.shape[1]) + tuple(crop))

    def with_grid_sample():
        grid = sampling_grid(A, t, x.shape[2:], crop)
        return F.grid_sample(x[:1], grid, mode="bilinear", padding_mode="border", align_corners=False)

    gs = timed(with_grid_sample, repeats)[1]
    fast = timed(lambda: affine_trilinear_(x[0], A[0], t[0], out[0]), repeats)[1]
    return gs, fast


def monai_compose(crop, seed: int):
    import monai
    from monai import transforms as T

    monai.data.set_track_meta(False)
    p = COMPARED
    lo = [max(1, int(p["dropout_size"][0] * s)) for s in crop]
    hi = [max(1, int(p["dropout_size"][1] * s)) for s in crop]
    comp = T.Compose([
        T.RandSpatialCrop(roi_size=crop, random_size=False),
        T.RandFlip(prob=p["flip_prob"], spatial_axis=0),
        T.RandAffine(prob=p["affine_prob"], rotate_range=[math.radians(p["rotate"])] * 3, scale_range=[0.1] * 3,
                     mode="bilinear", padding_mode="border"),
        T.RandBiasField(prob=p["bias_prob"], coeff_range=(-p["bias_coeff"], p["bias_coeff"]), degree=3),
        T.RandAdjustContrast(prob=p["gamma_prob"], gamma=p["gamma"]),
        T.RandGaussianSmooth(prob=p["blur_prob"], sigma_x=p["blur_sigma"], sigma_y=p["blur_sigma"], sigma_z=p["blur_sigma"]),
        T.RandGaussianNoise(prob=p["noise_prob"], std=p["noise_std"][1]),
        T.RandCoarseDropout(holes=p["dropout_holes"], spatial_size=lo, max_spatial_size=hi, fill_value=0.0,
                            prob=p["dropout_prob"]),
    ])
    comp.set_random_state(seed)
    return comp


def timed(fn, repeats: int, sync=lambda: None) -> tuple[float, float]:
    """Best (wall, process CPU) seconds of ``repeats`` calls.

    On a shared machine the wall time includes waiting for a core; with one thread the
    process CPU time is the work done, the fairer per-core measure.
    """
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        sync()
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - w0), min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu


def timed_rounds(fns: dict, repeats: int) -> dict:
    """(wall, process CPU) seconds of each call, ``repeats`` rounds with the functions
    interleaved, so that every function sees the same (shared-machine) conditions."""
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, 1))
    return times


def cpu_comparison(args) -> dict:
    import monai

    threads, track = torch.get_num_threads(), monai.data.get_track_meta()
    torch.set_num_threads(1)
    try:
        return _cpu_comparison(args)
    finally:  # leave the process as we found it (this also runs inside the test suite)
        torch.set_num_threads(threads)
        monai.data.set_track_meta(track)


def _cpu_comparison(args) -> dict:
    x = resize_batch(load_ixi(args.batch), args.shape, args.batch)
    ours = build_view_pipeline("none", 3, args.crop, overrides=COMPARED)
    full = build_view_pipeline("brain_mri", 3, args.crop)
    g = torch.Generator().manual_seed(0)
    ours(x[:2], g)  # warm-up
    comp = monai_compose(args.crop, 0)
    comp(x[0])
    rounds = timed_rounds({"ours": lambda: ours(x, g), "monai": lambda: [comp(x[i]) for i in range(args.batch)],
                           "full": lambda: full(x, g)}, args.repeats)
    t_ours, t_monai, t_full = ([min(r[k] for r in rounds[n]) / args.batch for k in (0, 1)]
                               for n in ("ours", "monai", "full"))
    per_round = [m[1] / o[1] for o, m in zip(rounds["ours"], rounds["monai"])]  # CPU-time ratio of each round
    stages = stage_times(ours, x, torch.Generator().manual_seed(1), lambda: None, time.process_time)
    t_gs, t_fast = resampler_times(x, tuple(args.crop), args.repeats)
    res = {"device": "cpu", "threads": 1, "shape": list(args.shape), "crop": list(args.crop), "batch": args.batch,
           "repeats": args.repeats, "medssl_cpu_s_per_view": t_ours[1], "monai_cpu_s_per_view": t_monai[1],
           "speedup_cpu_time": t_monai[1] / t_ours[1], "speedup_cpu_time_per_round": per_round,
           "medssl_wall_s_per_view": t_ours[0],
           "monai_wall_s_per_view": t_monai[0], "speedup_wall": t_monai[0] / t_ours[0],
           "medssl_brain_mri_full_preset_cpu_s_per_view": t_full[1],
           "medssl_stage_cpu_ms_per_view": {k: 1000 * v / args.batch for k, v in stages.items()},
           "one_view_grid_sample_cpu_s": t_gs, "one_view_affine_trilinear_cpu_s": t_fast}
    print(f"CPU 1 thread, batch {args.batch}, views {tuple(args.crop)} from {tuple(args.shape)} (real IXI T1), "
          f"best of {args.repeats} interleaved rounds:")
    print(f"  {'':34s} {'CPU ms/view':>12s} {'wall ms/view':>13s}")
    print(f"  {'medssl batch pipeline':34s} {1000 * t_ours[1]:12.1f} {1000 * t_ours[0]:13.1f}")
    print(f"  {'MONAI Compose (per sample)':34s} {1000 * t_monai[1]:12.1f} {1000 * t_monai[0]:13.1f}")
    print(f"  {'speed-up per core':34s} {t_monai[1] / t_ours[1]:11.2f}x {t_monai[0] / t_ours[0]:12.2f}x"
          f"   (CPU-time ratio of each round: {min(per_round):.2f}x-{max(per_round):.2f}x)")
    print(f"  {'medssl brain_mri preset (13 transf.)':34s} {1000 * t_full[1]:12.1f} {1000 * t_full[0]:13.1f}")
    print(f"  one interpolated view: 3D grid_sample {1000 * t_gs:.1f} ms, medssl affine_trilinear_ "
          f"{1000 * t_fast:.1f} ms ({t_gs / t_fast:.2f}x)")
    print("  medssl stages, one draw (CPU ms/view; samples applied/batch): "
          + ", ".join(f"{k} {v:.1f}" for k, v in res["medssl_stage_cpu_ms_per_view"].items()))
    return res


def cuda_throughput(args) -> dict:
    dev = torch.device(args.device)
    x = resize_batch(load_ixi(min(args.batch, 16)), args.shape, args.batch, dev)
    sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
    res = {"device": torch.cuda.get_device_name(dev), "shape": list(args.shape), "crop": list(args.crop),
           "batch": args.batch}
    for name, overrides, preset in [("compared_subset", COMPARED, "none"), ("brain_mri_full", {}, "brain_mri")]:
        pipe = build_view_pipeline(preset, 3, args.crop, overrides=overrides)
        g = torch.Generator(device=dev).manual_seed(0)
        for _ in range(3):  # warm-up (cuFFT plans, allocator, kernels)
            pipe(x, g)
            pipe.views(x, 2, g)
        t1 = timed(lambda: pipe(x, g), args.repeats, sync)[0]
        t2 = timed(lambda: pipe.views(x, 2, g), args.repeats, sync)[0]
        stages = stage_times(pipe, x, g, sync)
        res[name] = {"views_per_s_1view": args.batch / t1, "views_per_s_2views": 2 * args.batch / t2,
                     "stage_ms": {k: 1000 * v for k, v in stages.items()}}
        print(f"{res['device']}: {name}: {args.batch / t1:8.0f} views/s (1 view/sample), "
              f"{2 * args.batch / t2:8.0f} views/s (2 views/sample), {tuple(args.crop)} from {tuple(args.shape)}, "
              f"batch {args.batch}")
        print("    stages (ms/batch): " + ", ".join(f"{k} {1000 * v:.1f}" for k, v in stages.items()))
    res["peak_memory_GiB"] = torch.cuda.max_memory_allocated(dev) / 2**30
    print(f"peak GPU memory {res['peak_memory_GiB']:.1f} GiB")
    return res


def write_grid(path: str) -> None:
    from medssl.transforms.views import save_view_grid

    brain = load_ixi(1)[0]
    pipes = [build_view_pipeline("brain_mri", 3, (80, 96, 96)), build_view_pipeline("chest_xray", 2, (224, 224))]
    out = save_view_grid([("IXI T1 brain_mri", brain), ("NIH CXR chest_xray", load_cxr(256))], pipes, path,
                         n_views=5, seed=0, title="medssl views (seed 0): original | random views")
    print(f"wrote {out}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 8 on CPU, 64 on CUDA)")
    ap.add_argument("--shape", type=int, nargs=3, default=(160, 192, 160))
    ap.add_argument("--crop", type=int, nargs=3, default=(128, 128, 128))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes for a CI smoke test")
    ap.add_argument("--grid", default=None, help="write a PNG grid of original/views here")
    ap.add_argument("--no-speed", action="store_true", help="only write the grid")
    ap.add_argument("--json", default=None, help="write results as JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.shape, args.crop, args.repeats = (48, 56, 48), (32, 32, 32), 1
        args.batch = args.batch or 4
    args.batch = args.batch or (64 if args.device.startswith("cuda") else 8)
    res: dict = {}
    if args.grid:
        write_grid(args.grid)
    if not args.no_speed:
        t0 = time.time()
        res = cuda_throughput(args) if args.device.startswith("cuda") else cpu_comparison(args)
        res.update(machine=machine(args.device), wall_seconds=round(time.time() - t0, 1),
                   command=command_line("augment.py", argv))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
