"""Random-access read throughput: the preprocessed memory-mapped cache vs decoding the originals.

What is compared, per training sample, in one process with one thread (torch/BLAS), in the
same run and on the same records in the same random order:

* ``cache``: ``CachedScans[i]`` on the ``np.load(mmap_mode="r")`` cache written by
  ``medssl data prepare`` — read one float16 row, convert to a float32 tensor, plus the
  metadata tensors. This is exactly what a DataLoader worker does with the cache.
* ``decode + preprocess``: ``read_nifti`` (nibabel decode of the ``.nii.gz``, scaling) then
  the same ``Preprocessor`` (orient → resample → crop/pad → normalise) that built the
  cache: what a worker would do per sample without the cache. The headline ratio.
* ``nibabel decode only``: ``nibabel.load(path).get_fdata(dtype=float32)``, no
  preprocessing — a lower bound of the uncached cost.

"warm" = every file read once before timing (OS page cache holds the compressed files and
the cache); "cold" (``--cold``, Linux) = each file's pages are dropped with
``posix_fadvise(DONTNEED)`` before every read, so data comes from the storage device (or
a hypervisor cache). The one-off cost of building the cache is reported too.

    python benchmarks/cache.py                                   # real IXI, ../shared/data/ixi_t1_hh_2mm
    python benchmarks/cache.py --root /data/ixi_t1_hh_2mm --json out.json
    python benchmarks/cache.py --synthetic 64 --quick           # synthetic cohort, no shared data needed
    python benchmarks/cache.py --quick                          # CI smoke run: 8 volumes, fewer reads
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("MEDSSL_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))


def _drop(path: str) -> None:
    """Ask the kernel to drop a file's cached pages (no-op where unsupported)."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _time_reads(fn, order: list[int], cold_files=None) -> float:
    """Seconds per call of ``fn(i)`` over ``order`` (pages dropped before each call if cold)."""
    total = 0.0
    for i in order:
        if cold_files is not None:
            for f in cold_files(i):
                _drop(f)
        t0 = time.perf_counter()
        fn(i)
        total += time.perf_counter() - t0
    return total / len(order)


def run(args: argparse.Namespace) -> dict:
    import nibabel as nib
    import torch

    from medssl.data.card import load_card
    from medssl.data.dataset import CachedScans, MetadataCoder
    from medssl.data.manifest import build_manifest
    from medssl.data.prepare import cache_records, make_loader, make_preprocessor

    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory(prefix="medssl-cache-bench-")
    if args.synthetic:
        from medssl.data.synthetic import write_synthetic_cohort

        root = write_synthetic_cohort(Path(tmp.name) / "cohort", n_subjects=args.synthetic, n_sites=3,
                                      shape=(96, 96, 96), seed=0, workers=args.workers, progress=False)
        card = load_card("synthetic")
    else:
        card = load_card(args.card)
        root = Path(args.root) if args.root else SHARED / "data" / "ixi_t1_hh_2mm"
        if not (root / card.manifest).exists():
            raise SystemExit(f"{root / card.manifest} not found: pass --root DIR (the IXI folder) or --synthetic N")
    records = build_manifest(card, root)
    n = min(len(records), args.n or (8 if args.quick else len(records)))
    records = records[:n]
    pre = make_preprocessor(card, args.shape, None, None)
    loader = make_loader(card, pre, 1, root)
    cache_dir = Path(args.cache) if args.cache else Path(tmp.name) / "cache"

    t0 = time.perf_counter()
    cache = cache_records(records, loader, cache_dir, workers=args.workers, progress=False)
    build_s = time.perf_counter() - t0
    dataset = CachedScans(cache.images, records, list(range(n)), MetadataCoder(records))
    cache_file = str(cache_dir / "images.npy")

    rng = np.random.default_rng(args.seed)
    order = [int(i) for i in rng.integers(0, n, size=args.reads)]
    slow_order = order[: args.slow_reads]
    paths = [r.path for r in records]

    def cached(i):
        return dataset[i]["image"]

    def cached_cold(i):  # a fresh mapping, so dropped pages are really re-read
        images = np.load(cache_file, mmap_mode="r")
        return torch.from_numpy(np.asarray(images[i], dtype=np.float32))

    def decode_pre(i):
        return loader(records[i])

    def decode_only(i):
        return nib.load(paths[i]).get_fdata(dtype=np.float32)

    for i in range(n):  # warm: every file once
        cached(i), decode_only(i)
    results = {
        "cache": _time_reads(cached, order),
        "decode + preprocess": _time_reads(decode_pre, slow_order),
        "nibabel decode only": _time_reads(decode_only, slow_order),
    }
    if args.cold:
        results["cache (cold)"] = _time_reads(cached_cold, order[: args.slow_reads * 4], lambda i: [cache_file])
        results["decode + preprocess (cold)"] = _time_reads(decode_pre, slow_order, lambda i: [paths[i]])
    sample = decode_pre(0)
    assert np.allclose(cache.images[0].astype(np.float32), sample, atol=2e-3 * np.abs(sample).max())  # same tensor
    nii_mb = float(np.mean([os.path.getsize(p) for p in paths])) / 2**20
    out = {
        "data": f"synthetic cohort ({args.synthetic} subjects, 96³ at 2.33 mm)" if args.synthetic else str(root.resolve()),
        "card": card.name, "volumes": n, "cached_shape": list(cache.images.shape[1:]),
        "preprocessing": {"shape": pre.shape, "spacing": pre.spacing, "normalise": pre.normalise,
                          "orientation": pre.orientation},
        "bytes_per_volume": {"nii_gz_mib": round(nii_mb, 3), "cache_mib": round(cache.images[0].nbytes / 2**20, 3)},
        "build": {"seconds": round(build_s, 2), "workers": args.workers, "scans_per_s": round(n / build_s, 2)},
        "reads": {"cache": args.reads, "decode": len(slow_order), "order": f"uniform random, seed {args.seed}"},
        "ms_per_volume": {k: round(v * 1e3, 3) for k, v in results.items()},
        "speedup_vs_cache": {k: round(v / results["cache (cold)" if "cold" in k else "cache"], 1)
                             for k, v in results.items() if not k.startswith("cache")},
        "machine": {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
                    "cpus_visible": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "nibabel": nib.__version__, "torch": torch.__version__, "threads": 1},
    }
    tmp.cleanup() if not args.cache else None
    return out


def print_table(res: dict) -> None:
    print(f"data: {res['data']}  ({res['volumes']} volumes; cache {'×'.join(map(str, res['cached_shape']))} float16, "
          f"{res['bytes_per_volume']['cache_mib']} MiB/volume; .nii.gz {res['bytes_per_volume']['nii_gz_mib']} MiB)")
    print(f"preprocessing: {res['preprocessing']}")
    print(f"cache build: {res['build']['seconds']} s with {res['build']['workers']} worker(s) "
          f"({res['build']['scans_per_s']} scans/s)\n")
    print(f"{'read path (1 process, 1 thread)':36} {'ms / volume':>12} {'volumes / s':>12} {'cache is ×':>11}")
    for k, ms in res["ms_per_volume"].items():
        print(f"{k:36} {ms:12.3f} {1e3 / ms:12.1f} {res['speedup_vs_cache'].get(k, 1.0):11.1f}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--card", default="shared_ixi", help="data card (default: shared_ixi)")
    p.add_argument("--root", default=None, help="data root (default: ../shared/data/ixi_t1_hh_2mm)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="use a synthetic cohort of N subjects instead")
    p.add_argument("--shape", type=int, nargs=3, default=None, help="cached shape (default: the card's)")
    p.add_argument("--n", type=int, default=0, help="volumes to use (default: all; 8 with --quick)")
    p.add_argument("--reads", type=int, default=400, help="random cache reads timed")
    p.add_argument("--slow-reads", type=int, default=60, help="random decode reads timed")
    p.add_argument("--workers", type=int, default=2, help="processes building the cache")
    p.add_argument("--cache", default=None, help="keep the cache in this folder (default: a temporary one)")
    p.add_argument("--cold", action="store_true", help="also time reads with the files' pages dropped (Linux)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small run for CI (8 volumes, fewer reads)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.reads, args.slow_reads = min(args.reads, 100), min(args.slow_reads, 12)
    res = run(args)
    print_table(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
        print(f"\nwrote {args.json}")
    return res


if __name__ == "__main__":
    main()
