"""Multi-site loss study: age MAE on seen and unseen sites, site leakage and the OpenBHB score.

The loss family of ``benchmarks/demo_sweep.py --study`` (its ``STUDY`` variants, imported:
SimCLR, y-aware, L^exp, L^thr, ε-SupInfoNCE + FairKL(site)) at one budget per part, plus the
same encoder randomly initialised, under the OpenBHB protocol (Dufumier et al., NeuroImage 2022;
:mod:`medssl.eval.openbhb`): probes fitted on the training subjects of the *internal* sites;
internal test = held-out subjects of those sites; external test = every subject of the
*external* sites, which neither pretraining nor the probes ever see; site balanced accuracy on
the internal test; challenge score ``L_c = MAE_ext · BAcc^0.3`` (lower is better).

Parts (mean ± sd over training seeds; each seed also redraws the subject split):

* ``synthetic`` — 3D images of the synthetic cohort (``medssl.data.synthetic``, 5 sites):
  internal site-A (young), site-B (old), site-C (broad ages) — age and site confounded —
  external site-D (middle-aged) and site-E (old). Each run is ``medssl.api.pretrain`` of the
  demo recipe (``configs/pretrain/demo.yaml``) on the internal training subjects, then
  ``medssl.api.evaluate(protocol="openbhb")`` on all subjects. Budgets: ``full`` (the demo
  recipe: 100 subjects/site, 48³, 60 epochs; 47 min on 2 CPU cores), ``cpu`` (50/site, 32³, 30
  epochs), ``quick``. With ``--peers`` (``benchmarks/peers``): the stock MONAI SimCLR recipe and
  nidl (SimCLR, and y-aware on the training subjects' ages) with the SimCLR row's budget (epochs,
  batch, lr, crop, network and initial weights) on the same subjects, scored by the same probes.
  With ``--validation``: a 7-site cohort whose unseen sites are site-F and site-G (site-D and
  site-E left out), so that recipes can be compared on unseen sites that are not the test sites.
* ``ixi`` — real DLMUSE ROI volumes of 291 IXI subjects (``../shared/data/ixi_dlmuse_roi_multisite``):
  internal Guys + HH (70/30 subject split stratified by site), external IOP (GE 1.5 T). Log
  volumes standardised with training statistics; a small MLP encoder trained with the same
  losses on feature-space views (Gaussian noise + feature dropout); baselines: Ridge on the
  ROI features, Ridge after ComBat (sex kept as covariate), the random-init MLP.

    python benchmarks/multisite_study.py synthetic --jobs 2 --threads 1          # full, 2 CPU cores
    python benchmarks/multisite_study.py synthetic --jobs 8 --threads 2 \\
        --common "train.device=cuda;train.precision=fp32"                       # full, GPU
    python benchmarks/multisite_study.py synthetic --budget cpu --jobs 2          # reduced, CPU
    python benchmarks/multisite_study.py synthetic --budget cpu --jobs 2 \\
        --validation --cohort-seed 1                                             # F, G unseen: choose recipes
    python benchmarks/multisite_study.py ixi                                      # CPU, minutes
    python benchmarks/multisite_study.py ixi --quick                              # CI smoke run

The parts live in modules next to this script: ``multisite_synthetic.py`` and ``multisite_ixi.py``,
with the row fields both write in ``multisite_rows.py`` and the summary, table and figure in
``multisite_report.py``; this file holds the command line and writes the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_sweep import STUDY  # noqa: E402
from multisite_ixi import run_ixi  # noqa: E402
from multisite_report import plot, print_table, summarise  # noqa: E402
from multisite_rows import REPO  # noqa: E402
from multisite_synthetic import run_synthetic, synthetic_sites  # noqa: E402
from seed_runs import cpu_name, git_commit  # noqa: E402

from peers import usable, versions  # noqa: E402 - benchmarks/peers; optional packages load on use


def machine(threads: int) -> dict:
    import torch

    info = {"platform": platform.platform(), "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads_per_process": threads, "load_average_1_5_15_min_at_end": list(os.getloadavg()),
            "medssl_commit": git_commit()}
    if torch.cuda.is_available():  # called after the worker pool is done (no CUDA in the forking parent)
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _jsonable(obj):
    """NumPy scalars → Python numbers; NaN/inf → None (strict JSON: a missing SD reads as null, never 0)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj.item() if isinstance(obj, np.generic) else obj


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("synthetic", "ixi"))
    ap.add_argument("--quick", action="store_true", help="smoke run (seconds; CI)")
    ap.add_argument("--budget", choices=("full", "cpu"), default="full",
                    help="synthetic part: full (47 min on 2 CPU cores) or cpu (11 min)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="training/split seeds (default 0 1 2; quick: 0 1)")
    ap.add_argument("--variants", nargs="+", default=None, help=f"subset of {list(STUDY)}")
    ap.add_argument("--out", default=None, help="work folder (default runs/multisite_<part>)")
    ap.add_argument("--json", default=None, help="result JSON (default OUT/result.json)")
    ap.add_argument("--figure", default=None, help="figure PNG (default OUT/figure.png)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--jobs", type=int, default=1, help="synthetic: parallel runs (processes)")
    ap.add_argument("--common", default="", help="synthetic: config overrides for every run, separated by ; (a variant's own overrides come after them and win)")
    ap.add_argument("--cohort-seed", type=int, default=0)
    ap.add_argument("--validation", action="store_true",
                    help="synthetic: unseen sites F and G of a 7-site cohort (D and E left out), to compare recipes "
                         "without the test sites; use another --cohort-seed than the test run's")
    ap.add_argument("--reuse-runs", action="store_true",
                    help="synthetic: evaluate finished runs in OUT with an identical resolved config, not retrain")
    ap.add_argument("--ixi-dir", default=str(Path(os.environ.get("MEDSSL_SHARED", REPO.parent / "shared"))
                                          / "data" / "ixi_dlmuse_roi_multisite"))
    ap.add_argument("--test-fraction", type=float, default=0.3, help="ixi: internal held-out fraction")
    ap.add_argument("--peers", nargs="*", default=[], metavar="PEER",
                    help="synthetic: also run these peer recipes (benchmarks/peers: monai_stock, nidl; nidl also "
                         "y-aware) with the SimCLR row's budget; a peer that cannot run here is skipped with the reason")
    a = ap.parse_args(argv)
    if a.validation and a.part != "synthetic":
        raise SystemExit("--validation: the ixi part has one unseen site (IOP) and no validation sites")
    if a.peers and a.part != "synthetic":
        raise SystemExit("--peers: the peers pretrain on images; the ixi part is a table of ROI volumes")
    a.peers, skipped = usable(a.peers, 3)
    for name, why in skipped.items():
        print(f"peer {name} skipped: {why}", flush=True)
    a.seeds = a.seeds or ([0, 1] if a.quick else [0, 1, 2])
    a.out = a.out or str(REPO / "runs" / f"multisite_{a.part}")
    t0 = time.time()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(a.threads):  # BLAS threads competing on shared cores cost up to 30x (tests/eval/conftest.py)
        res = run_synthetic(a) if a.part == "synthetic" else run_ixi(a)
    summary = summarise(res["rows"])
    budget = "quick" if a.quick else a.budget if a.part == "synthetic" else "full"
    where = ((f"synthetic cohort: sites A, B, C internal, {', '.join(synthetic_sites(a.validation)[1])} external"
              + (" (validation: D, E left out)" if a.validation else "")) if a.part == "synthetic"
             else "IXI DLMUSE ROI volumes: Guys + HH internal, IOP external")
    title = f"{where}; {budget} budget; mean ± sd over seeds {a.seeds} (dots: seeds)"
    result = {"part": a.part, "quick": a.quick, "seeds": a.seeds, **res, "summary": summary,
              "wall_seconds": time.time() - t0, "machine": machine(a.threads),
              **({"peers_skipped": skipped, "peer_packages": versions()} if a.peers or skipped else {}),
              "command": " ".join(["python benchmarks/multisite_study.py",
                                   *(argv if argv is not None else sys.argv[1:])])}
    print_table(title, summary, res["chance"])
    print(f"wall time {result['wall_seconds']:.0f} s")
    json_path = Path(a.json or Path(a.out) / "result.json")
    fig_path = Path(a.figure or Path(a.out) / "figure.png")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    plot(summary, fig_path, title, res["chance"])
    result["figure"] = str(fig_path)
    json_path.write_text(json.dumps(_jsonable(result), indent=2))
    return result


if __name__ == "__main__":
    main()
