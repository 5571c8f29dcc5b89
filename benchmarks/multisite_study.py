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
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_sweep import STUDY  # noqa: E402
from seed_runs import pyplot, save_figure  # noqa: E402

from peers import PEERS, usable, versions  # noqa: E402 - benchmarks/peers; optional packages load on use
from peers.common import frozen, monai_resnet18, resnet_kwargs_of, unit_range  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "pretrain" / "demo.yaml"
RANDOM = "random init (same encoder)"
PEER_LABELS = {"monai_stock": "stock MONAI SimCLR recipe (peer)", "nidl": "nidl SimCLR (peer)",
               "nidl_yaware": "nidl y-aware (peer)",  #: ``--peers`` rows; nidl also runs its y-aware estimator
               "": "random init, min-max input (peer control)"}  #: the random row's weights on the peers' input
METRICS = ("mae_int", "mae_ext", "bacc_site", "score")
TITLES = {"mae_int": "internal age MAE (y) ↓", "mae_ext": "external age MAE (y) ↓",
          "bacc_site": "site balanced accuracy ↓", "score": "OpenBHB L_c = MAE_ext·BAcc^0.3 ↓"}
SYN_INTERNAL, SYN_EXTERNAL = ["site-A", "site-B", "site-C"], ["site-D", "site-E"]
SYN_VALIDATION = ["site-F", "site-G"]  #: unseen sites of the --validation cohort (7 sites, D and E left out)
SYN_BUDGETS = {  # subjects per site, cohort grid = data.shape, view crop, epochs, batch
    "full": {"per_site": 100, "shape": 48, "crop": 40, "epochs": 60, "batch": 32},
    "cpu": {"per_site": 50, "shape": 32, "crop": 28, "epochs": 30, "batch": 32},
    "quick": {"per_site": 10, "shape": 24, "crop": 20, "epochs": 1, "batch": 8},
}
IXI_EXTERNAL = "IOP"
IXI_BUDGETS = {  # MLP encoder and its training; fixed before any run, the same for every loss
    "full": {"hidden": 256, "out_dim": 128, "proj_hidden": 128, "proj_dim": 32, "noise": 0.2, "dropout": 0.2,
             "epochs": 300, "batch": 64, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 10},
    "quick": {"hidden": 64, "out_dim": 32, "proj_hidden": 32, "proj_dim": 16, "noise": 0.2, "dropout": 0.2,
              "epochs": 3, "batch": 64, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 1},
}


def synthetic_sites(validation: bool) -> tuple[int, list[str]]:
    """``(sites in the cohort, unseen sites)``: 5 sites with D, E unseen (the test), or 7 with F, G unseen."""
    return (7, SYN_VALIDATION) if validation else (5, SYN_EXTERNAL)


# --------------------------------------------------------------------------- shared


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample SD (ddof=1); SD is NaN for a single value (never a fake 0)."""
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def summarise(rows: list[dict]) -> list[dict]:
    """Per label (first-seen order): n, per-seed values and mean ± sd of each metric present."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        sel = sorted((r for r in rows if r["label"] == label), key=lambda r: r["seed"])
        agg = {"label": label, "n": len(sel), "seeds": [r["seed"] for r in sel]}
        for key in METRICS:
            if all(key in r for r in sel):
                agg[key] = {"mean": (ms := mean_sd([r[key] for r in sel]))[0], "sd": ms[1],
                            "per_seed": [r[key] for r in sel]}
        out.append(agg)
    return out


def print_table(title: str, summary: list[dict], chance: float) -> None:
    print(f"\n{title}")
    print(f"{'method':42s} " + " ".join(f"{k:>15s}" for k in ("MAE int (y)", "MAE ext (y)", "site BAcc", "L_c")))
    for s in summary:
        cells = [f"{s[k]['mean']:7.3f} ± {s[k]['sd']:5.3f}" if k in s else f"{'—':>15s}" for k in METRICS]
        print(f"{s['label'][:42]:42s} " + " ".join(cells))
    print(f"(site BAcc chance = {chance:.2f}; n = {summary[0]['n']} seeds)")


def plot(summary: list[dict], path: Path, title: str, chance: float) -> None:
    """Horizontal bars (mean ± sd, dots = seeds) of the four metrics, one row per method."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 4, figsize=(17, 0.45 * len(summary) + 1.6), sharey=True)
    labels = [s["label"] for s in summary]
    for ax, key in zip(axes, METRICS):
        rows = [(i, s[key]) for i, s in enumerate(summary) if key in s]
        color = ["C7" if _is_baseline(summary[i]["label"]) else "C4" if "(peer)" in summary[i]["label"] else "C0"
                 for i, _ in rows]
        ax.barh([i for i, _ in rows], [m["mean"] for _, m in rows], xerr=[np.nan_to_num(m["sd"]) for _, m in rows],
                color=color, alpha=0.8)
        for i, m in rows:
            ax.plot(m["per_seed"], [i] * len(m["per_seed"]), "k.", ms=4)
        if key == "bacc_site":
            ax.axvline(chance, color="k", ls=":", lw=1)
        ax.set_title(TITLES[key], fontsize=10)
        ax.set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=100)


def _is_baseline(label: str) -> bool:
    return any(w in label for w in ("random init", "Ridge", "mean predictor"))


def machine(threads: int) -> dict:
    import torch

    info = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads_per_process": threads, "load_average_1_5_15_min_at_end": list(os.getloadavg())}
    if torch.cuda.is_available():  # called after the worker pool is done (no CUDA in the forking parent)
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _scores(o: dict, age_ext: np.ndarray | None = None) -> dict:
    """The kit's scores of one :func:`medssl.eval.openbhb.run_openbhb` result (``age_ext`` defaults to
    ``o["age_ext"]``), plus on the external subjects: the standard error of the MAE (``mae_ext_se``; how
    finely the external set can rank methods) and the mean signed error (``ext_bias``, years)."""
    err = np.asarray(o["pred_ext"]) - np.asarray(o["age_ext"] if age_ext is None else age_ext)
    return {"mae_int": o["mae_age"], "mae_ext": o["ext_mae_age"], "bacc_site": o["bacc_site"],
            "mae_ext_se": float(np.abs(err).std(ddof=1) / np.sqrt(len(err))), "ext_bias": float(err.mean()),
            "score": o["challenge_metric"], "n_train": o["n_train"], "n_internal": o["n_internal"],
            "n_external": o["n_external"], "age_alpha": o["selected_age_alpha"], "site_C": o["selected_site_C"]}


def _mean_predictor(seed: int, age: np.ndarray, masks: dict) -> dict:
    m = float(age[masks["train"]].mean())
    return {"label": "training-mean predictor", "seed": seed,
            "mae_int": float(np.abs(age[masks["internal"]] - m).mean()),
            "mae_ext": float(np.abs(age[masks["external"]] - m).mean())}


def _jsonable(obj):
    """NumPy scalars → Python numbers; NaN/inf → None (strict JSON: a missing SD reads as null, never 0)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj.item() if isinstance(obj, np.generic) else obj


def _overrides(spec: str) -> list[str]:
    return [o.strip() for o in spec.split(";") if o.strip()]


def _variants(names: list[str] | None) -> dict[str, str]:
    """The STUDY variants named on the command line (all by default); unknown names are an error."""
    unknown = sorted(set(names or []) - set(STUDY))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; valid: {list(STUDY)}")
    return {k: v for k, v in STUDY.items() if not names or k in names}


# --------------------------------------------------------------------------- part 1: synthetic images


def write_split_cards(cohort: Path, out: Path, seed: int, test_fraction: float,
                      external: list[str] = SYN_EXTERNAL) -> tuple[Path, Path, dict]:
    """Data cards with an official split for ``seed``: one for pretraining (internal sites only), one for evaluation.

    Internal subjects are split by :func:`medssl.data.splits.subject_split` (stratified by site and
    diagnosis, as a run would); ``external`` subjects are all "test"; subjects of other sites are
    left out of both cards. Returns ``(pretrain card, eval card, {"age", "train", "internal",
    "external"} arrays over the kept rows)``.
    """
    import yaml

    from medssl.data.manifest import Record
    from medssl.data.splits import subject_split

    with open(cohort / "participants.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["site"] in SYN_INTERNAL + list(external)]
    internal = [r for r in rows if r["site"] in SYN_INTERNAL]
    recs = [Record(path=r["participant_id"], subject=r["participant_id"], site=r["site"], label=r["diagnosis"])
            for r in internal]
    drawn = subject_split(recs, test_fraction, seed, ("site", "label"))
    split = dict(zip((r["participant_id"] for r in internal), drawn))
    table = out / "splits" / f"participants-seed{seed}.tsv"
    table.parent.mkdir(parents=True, exist_ok=True)
    with open(table, "w", newline="") as f:
        w = csv.DictWriter(f, [*rows[0], "split"], delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows({**r, "split": split.get(r["participant_id"], "test")} for r in rows)
    card = yaml.safe_load((REPO / "data_cards" / "synthetic.yaml").read_text())
    card.update(manifest=str(table.resolve()), columns={**card["columns"], "split": "split"})
    paths = []
    for kind, extra in (("pretrain", {"select": {"site": SYN_INTERNAL}}), ("eval", {})):
        p = out / "splits" / f"card-{kind}-seed{seed}.yaml"
        p.write_text(yaml.safe_dump({**card, "name": f"synthetic_multisite_{kind}_seed{seed}", **extra},
                                    sort_keys=False))
        paths.append(p)
    site = np.array([r["site"] for r in rows])
    is_train = np.array([split.get(r["participant_id"]) == "train" for r in rows])
    ext = np.isin(site, external)
    masks = {"age": np.array([float(r["age"]) for r in rows]), "train": is_train & ~ext, "internal": ~is_train & ~ext,
             "external": ext}
    return paths[0], paths[1], masks


def _finished_run(run_dir: Path, cfg) -> bool:
    """True when ``run_dir`` holds a finished pretraining run of exactly ``cfg`` (same resolved-config hash)."""
    from medssl.config import config_hash, load_config

    if not (run_dir / "train_summary.json").is_file() or not (run_dir / "config.yaml").is_file():
        return False
    return config_hash(load_config(run_dir / "config.yaml")) == config_hash(cfg)


def _synthetic_run(job: dict) -> list[dict]:
    """Pretrain one variant × seed on the internal training subjects, then the OpenBHB protocol (worker)."""
    import torch

    torch.set_num_threads(job["threads"])
    from threadpoolctl import threadpool_limits

    from medssl.api import evaluate, pretrain
    from medssl.config import load_config
    from medssl.eval.driver import EvalOptions

    t0 = time.time()
    cfg = load_config(DEMO_CONFIG, job["overrides"])
    run_dir = Path(cfg.output_dir)
    reused = job["reuse"] and _finished_run(run_dir, cfg)
    if not reused and (run_dir / "config.yaml").is_file():  # an earlier run here: never evaluate its checkpoints
        shutil.rmtree(run_dir)
    with threadpool_limits(job["threads"]):
        if not reused:
            pretrain(cfg, progress=False)
        t1 = time.time()
        opts = EvalOptions(external_sites=tuple(job["external"]), map_method="none", n_boot=0,
                           random_init=job["random_init"])
        res = evaluate(run_dir, progress=False, protocol="openbhb", data=job["eval_card"], root=job["cohort"],
                       options=opts)
    t2 = time.time()
    train = json.loads((Path(run_dir) / "train_summary.json").read_text())
    rows = [{"label": job["label"], "seed": cfg.seed, **_scores(res["openbhb"]["pretrained"]), "reused_run": reused,
             "pretrain_seconds": train["seconds"], "eval_seconds": t2 - t1, "job_seconds": t2 - t0,
             "steps": train["steps"], "final_loss": train["final_loss"], "run_dir": str(run_dir)}]
    if "random init" in res["openbhb"]:  # the same architecture, seeded by the run's seed, untrained
        rows.append({"label": RANDOM, "seed": cfg.seed, **_scores(res["openbhb"]["random init"]),
                     "run_dir": str(run_dir)})
    return rows


def _synthetic_peer_run(job: dict) -> list[dict]:
    """Peer ``job["peer"]`` (benchmarks/peers; y-aware when ``job["yaware"]``) on the internal training subjects of
    one seed, under the SimCLR row's budget and network, then the same OpenBHB probes (worker).

    The scans are the evaluation card's at the budget's grid (the demo recipe's z-scored preprocessing), each
    min-max rescaled to [0, 1] for the peer (its input convention), at pretraining and for the embeddings.
    ``job["peer"] == ""`` is the control: the random-init row's network and weights, untrained, on that input."""
    import torch

    torch.set_num_threads(job["threads"])
    from threadpoolctl import threadpool_limits

    from medssl.api import prepare_data
    from medssl.config import load_config
    from medssl.encoders import build_encoder
    from medssl.eval.openbhb import run_openbhb

    t0 = time.time()
    cfg = load_config(DEMO_CONFIG, job["overrides"])
    if cfg.encoder.name != "resnet18":
        raise SystemExit(f"--peers: the peers train MONAI's resnet18; the recipe's encoder is {cfg.encoder.name}")
    kwargs = resnet_kwargs_of(build_encoder(cfg.encoder.name, 3, 1, **cfg.encoder.options))  # the same network
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg, run_dir, progress=False)  # the eval card's split: internal train / test, external test
    site = np.array([r.site for r in data.records])
    age = np.array([r.age for r in data.records], float)
    codes = np.unique(site, return_inverse=True)[1]
    train = np.array(data.train)
    internal = np.array([i for i in data.test if site[i] in SYN_INTERNAL])
    external = np.array([i for i in data.test if site[i] in job["external"]])
    x = unit_range(data.images)
    extra = {"aux": age[train], "bandwidth": float(cfg.method.loss["sigma"]) ** 2} if job["yaware"] else {}
    history = []
    with threadpool_limits(job["threads"]):
        if job["peer"]:
            encoder = PEERS[job["peer"]].pretrain(x[train], 3, job["epochs"], min(job["batch"], len(train)),
                                                  cfg.train.lr, cfg.seed, "cpu", job["crop"], history=history,
                                                  encoder_kwargs=kwargs, **extra)
        else:  # seeded like evaluate()'s random-init encoder: the same weights (tests/benchmarks/test_multisite_quick.py)
            torch.manual_seed(cfg.seed)
            encoder = frozen(monai_resnet18(3, kwargs))
        t1 = time.time()
        with torch.no_grad():
            f = torch.cat([encoder(torch.from_numpy(x[i:i + 64])) for i in range(0, len(x), 64)]).numpy()
        o = run_openbhb(f[train], age[train], codes[train], f[internal], age[internal], codes[internal], f[external],
                        age[external])
    label = PEER_LABELS[f"{job['peer']}_yaware" if job["yaware"] else job["peer"]]
    trained = {"steps": sum(h["steps"] for h in history), "final_loss": history[-1]["loss"]} if history else {}
    return [{"label": label, "seed": cfg.seed, **_scores(o, age[external]), "pretrain_seconds": t1 - t0,
             "job_seconds": time.time() - t0, **trained, "history": history, "run_dir": str(run_dir)}]


def _job(job: dict) -> list[dict]:
    return _synthetic_peer_run(job) if "peer" in job else _synthetic_run(job)


def run_synthetic(a: argparse.Namespace) -> dict:
    from medssl.config import load_config
    from medssl.data.synthetic import write_synthetic_cohort

    b = SYN_BUDGETS["quick" if a.quick else a.budget]
    variants = _variants(a.variants)
    out = Path(a.out)
    n_sites, external = synthetic_sites(a.validation)
    cohort = out / f"cohort-seed{a.cohort_seed}-{b['per_site']}x{n_sites}-{b['shape']}"
    workers = 1 if (os.cpu_count() or 1) <= 2 else min(8, os.cpu_count())
    write_synthetic_cohort(cohort, n_subjects=n_sites * b["per_site"], n_sites=n_sites, shape=(b["shape"],) * 3,
                           seed=a.cohort_seed, workers=workers, progress=False)
    test_fraction = load_config(DEMO_CONFIG).data.test_fraction
    common = _overrides(a.common)
    jobs, baselines = [], []
    for s in a.seeds:
        pre_card, eval_card, masks = write_split_cards(cohort, out, s, test_fraction, external)
        baselines.append(_mean_predictor(s, masks["age"], masks))
        for i, (label, spec) in enumerate(variants.items()):
            budget = [f"data.card={pre_card}", f"data.root={cohort}", f"output_dir={out / f'run{i}-seed{s}'}",
                      "train.progress=false", f"data.shape=[{b['shape']},{b['shape']},{b['shape']}]",
                      f"augment.crop_size=[{b['crop']},{b['crop']},{b['crop']}]", f"train.epochs={b['epochs']}",
                      f"train.batch_size={b['batch']}"]
            jobs.append({"label": label, "cohort": str(cohort), "eval_card": str(eval_card), "threads": a.threads,
                         "external": external,
                         "random_init": i == 0, "reuse": a.reuse_runs,
                         "overrides": [*budget, *common, *_overrides(spec), f"seed={s}"]})
        for name in [*a.peers, ""] if a.peers else []:  # "": the min-max-input control of the random row
            for yaware in (False, True) if name == "nidl" else (False,):
                run_dir = out / f"peer-{name or 'control'}{'-yaware' if yaware else ''}-seed{s}"
                jobs.append({"peer": name, "yaware": yaware, "external": external, "threads": a.threads,
                             "epochs": b["epochs"], "batch": b["batch"], "crop": b["crop"], "overrides": [
                                 f"data.card={eval_card}", f"data.root={cohort}", f"seed={s}", f"output_dir={run_dir}",
                                 f"data.shape=[{b['shape']},{b['shape']},{b['shape']}]",
                                 f"augment.crop_size=[{b['crop']},{b['crop']},{b['crop']}]", *common]})
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as ex:
            rows = [r for rs in ex.map(_job, jobs) for r in rs]
    else:
        rows = [r for job in jobs for r in _job(job)]
    last = (RANDOM, PEER_LABELS[""])  # the random encoder, on the methods' input and on the peers'
    rows = [r for r in rows if r["label"] not in last] + [r for lab in last for r in rows if r["label"] == lab] + baselines
    return {"budget": {**b, "subjects": len(masks["age"]), "internal_sites": SYN_INTERNAL,
                       "external_sites": external, "validation": a.validation, "cohort_seed": a.cohort_seed,
                       "test_fraction": test_fraction,
                       "recipe": str(DEMO_CONFIG.relative_to(REPO)), "common_overrides": common, "variants": variants,
                       "peers": list(a.peers)},
            "rows": rows, "chance": 1 / len(SYN_INTERNAL)}


# --------------------------------------------------------------------------- part 2: real IXI ROI table


def load_ixi(folder: Path) -> dict:
    """``{"x": (291, 260) ROI volumes mm³, "age": years, "sex": 1 = M, "site", "subject", "rois"}``."""
    roi, demog = folder / "IXI_DLMUSE.csv", folder / "IXI_demog.csv"
    if not roi.is_file() or not demog.is_file():
        raise FileNotFoundError(f"{folder} lacks IXI_DLMUSE.csv / IXI_demog.csv; pass --ixi-dir (the shared folder "
                                "ixi_dlmuse_roi_multisite, see its PROVENANCE.md)")
    with open(roi, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(demog, newline="") as f:
        dem = {r["ID"]: r for r in csv.DictReader(f)}
    cols = [c for c in rows[0] if c != "ID"]
    return {"x": np.array([[float(r[c]) for c in cols] for r in rows]), "rois": cols,
            "age": np.array([float(dem[r["ID"]]["Age"]) for r in rows]),
            "sex": np.array([dem[r["ID"]]["Sex"] == "M" for r in rows], float),
            "site": np.array([r["ID"].split("-")[1] for r in rows]), "subject": np.array([r["ID"] for r in rows])}


def feature_mlp(in_dim: int, hidden: int, out_dim: int):
    """Encoder for feature vectors ``(B, in_dim) → (B, out_dim)``: Linear → BN → ReLU → Linear → BN → ReLU."""
    from torch import nn

    net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                        nn.Linear(hidden, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU())
    net.out_dim, net.in_channels, net.spatial_dims = out_dim, in_dim, 0  # the encoder contract's attributes
    return net


class FeatureViews:
    """Random views of standardised feature vectors: ``x + N(0, noise²)``, then each feature set to 0
    (the training mean) with probability ``dropout``. ``views(x (B, D), V, generator) -> (B, V, D)``."""

    def __init__(self, noise: float, dropout: float) -> None:
        self.noise, self.dropout = noise, dropout

    def views(self, x, n_views: int, generator):
        import torch

        v = x.unsqueeze(1).expand(-1, n_views, -1)
        noise = torch.randn(v.shape, generator=generator, device=x.device, dtype=x.dtype)
        keep = torch.rand(v.shape, generator=generator, device=x.device) >= self.dropout
        return (v + self.noise * noise) * keep


def ixi_split(d: dict, seed: int, test_fraction: float) -> dict:
    """OpenBHB row masks: internal subjects split (stratified by site, seeded), IOP external."""
    from medssl.data.manifest import Record
    from medssl.data.splits import subject_split
    from medssl.eval.openbhb import internal_external_split

    recs = [Record(path=s, subject=s, site=site) for s, site in zip(d["subject"], d["site"])]
    is_train = np.array(subject_split(recs, test_fraction, seed, "site")) == "train"
    return internal_external_split(d["site"], is_train, [IXI_EXTERNAL])


def train_feature_method(label: str, spec: str, z, d: dict, m: dict, b: dict, seed: int):
    """Train the STUDY variant ``spec`` on the training rows of ``z``; returns (encoder, final loss).

    The method, its loss, metadata and FairKL wiring come from :func:`medssl.api.build_method` on the
    demo config + the variant (exactly as for the images); only the encoder (MLP), projection head
    and views (feature noise / dropout) are replaced. The encoder is built first under
    ``torch.manual_seed(seed)``, so its initial weights equal the random-init row's.
    """
    import torch

    from medssl.api import build_method
    from medssl.config import load_config
    from medssl.heads import ProjectionHead
    from medssl.train.optim import build_optimizer, warmup_cosine

    torch.manual_seed(seed)
    encoder = feature_mlp(z.shape[1], b["hidden"], b["out_dim"])
    cfg = load_config(DEMO_CONFIG, [*_overrides(spec), f"seed={seed}"])
    method = build_method(cfg)
    method.encoder, method.projector = encoder, ProjectionHead(b["out_dim"], b["proj_hidden"], b["proj_dim"])
    method.views = FeatureViews(b["noise"], b["dropout"])
    tr = np.flatnonzero(m["train"])
    codes = {s: i for i, s in enumerate(sorted(set(d["site"][tr])))}
    x = torch.as_tensor(z[tr], dtype=torch.float32)
    age = torch.as_tensor(d["age"][tr], dtype=torch.float32)
    site = torch.as_tensor([codes[s] for s in d["site"][tr]])
    per_epoch = len(tr) // b["batch"]
    opt = build_optimizer(method, "adamw", b["lr"], b["weight_decay"])
    sched = warmup_cosine(opt, b["warmup_epochs"] * per_epoch, b["epochs"] * per_epoch)
    gen = torch.Generator().manual_seed(seed)
    method.train()
    loss = torch.tensor(float("nan"))
    for _ in range(b["epochs"]):
        perm = torch.randperm(len(tr), generator=gen)
        for k in range(per_epoch):
            i = perm[k * b["batch"]:(k + 1) * b["batch"]]
            loss = method.training_step({"image": x[i], "age": age[i], "site": site[i]}, gen).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{label}, seed {seed}: loss became {loss.item()}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return encoder.eval(), float(loss.detach())


def _embed(encoder, z) -> np.ndarray:
    import torch

    with torch.no_grad():
        return encoder.eval()(torch.as_tensor(z, dtype=torch.float32)).numpy().astype(float)


def _parts(m: dict, f: np.ndarray) -> dict:
    return {k: f[m[k]] for k in ("train", "internal", "external")}


def _openbhb(label: str, seed: int, feats: dict[str, np.ndarray], d: dict, m: dict, **extra) -> dict:
    from medssl.eval.openbhb import run_openbhb

    codes = np.unique(d["site"], return_inverse=True)[1]
    age = d["age"]
    o = run_openbhb(feats["train"], age[m["train"]], codes[m["train"]], feats["internal"], age[m["internal"]],
                    codes[m["internal"]], feats["external"], age[m["external"]])
    return {"label": label, "seed": seed, **_scores(o, d["age"][m["external"]]), **extra}


def run_ixi(a: argparse.Namespace) -> dict:
    import torch

    from medssl.eval.combat import ComBat

    torch.set_num_threads(a.threads)
    b = IXI_BUDGETS["quick" if a.quick else "full"]
    variants = _variants(a.variants)
    d = load_ixi(Path(a.ixi_dir))
    rows = []
    for seed in a.seeds:
        m = ixi_split(d, seed, a.test_fraction)
        logv = np.log(d["x"])
        mu, sd = logv[m["train"]].mean(0), logv[m["train"]].std(0)
        z = (logv - mu) / sd  # training statistics only
        rows.append(_openbhb("Ridge on log ROI volumes (no encoder)", seed, _parts(m, z), d, m))
        sex = d["sex"][:, None]
        cb = ComBat().fit(z[m["train"]], d["site"][m["train"]], sex[m["train"]])
        h = {k: cb.transform(z[m[k]], d["site"][m[k]], sex[m[k]]) for k in ("train", "internal")}
        rows.append(_openbhb("Ridge after ComBat (IOP unharmonised)", seed, {**h, "external": z[m["external"]]}, d, m))
        fit = m["train"] | m["external"]  # transductive: the external features (never their ages) enter the fit
        cb = ComBat().fit(z[fit], d["site"][fit], sex[fit])
        h = {k: cb.transform(z[m[k]], d["site"][m[k]], sex[m[k]]) for k in ("train", "internal", "external")}
        rows.append(_openbhb("Ridge after ComBat incl. IOP features", seed, h, d, m))
        for label, spec in variants.items():
            t0 = time.time()
            enc, final = train_feature_method(label, spec, z, d, m, b, seed)
            rows.append(_openbhb(f"MLP {label}", seed, _parts(m, _embed(enc, z)), d, m, final_loss=final,
                                 seconds=time.time() - t0))
        torch.manual_seed(seed)  # the untrained twin: the same initial weights as every trained MLP of this seed
        untrained = feature_mlp(z.shape[1], b["hidden"], b["out_dim"])
        rows.append(_openbhb(f"MLP {RANDOM}", seed, _parts(m, _embed(untrained, z)), d, m))
        rows.append(_mean_predictor(seed, d["age"], m))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    labels = [lab for lab in labels if lab.startswith("MLP")] + [lab for lab in labels if not lab.startswith("MLP")]
    rows.sort(key=lambda r: (labels.index(r["label"]), r["seed"]))
    counts = {k: {s: int((d["site"][m[k]] == s).sum()) for s in np.unique(d["site"][m[k]])} for k in m}
    return {"budget": {**b, "encoder": f"MLP {len(d['rois'])}→{b['hidden']}→{b['out_dim']} (BN, ReLU)",
                       "features": "log ROI volumes, standardised with training statistics",
                       "test_fraction": a.test_fraction, "internal_sites": sorted(set(d["site"]) - {IXI_EXTERNAL}),
                       "external_sites": [IXI_EXTERNAL],
                       "variants": variants, "combat_covariates": ["sex"], "subjects_per_split_last_seed": counts},
            "rows": rows, "chance": 0.5}


# --------------------------------------------------------------------------- main


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
    ap.add_argument("--common", default="", help="synthetic: config overrides for every run, separated by ;")
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
