"""Part ``synthetic`` of the multi-site study (``benchmarks/multisite_study.py``): 3D images of the synthetic cohort.

Sites A, B, C internal, D and E external (with ``--validation``: a 7-site cohort with F and G
unseen). :func:`write_split_cards` draws each seed's subject split into two data cards; every
``STUDY`` variant × seed is one ``medssl.api.pretrain`` of the demo recipe on the internal training
subjects, then ``medssl.api.evaluate(protocol="openbhb")`` (:func:`_synthetic_run`); with
``--peers`` each peer recipe (``benchmarks/peers``) runs under the SimCLR row's budget on the same
subjects and is scored by the same probes (:func:`_synthetic_peer_run`). :func:`run_synthetic`
runs them all, in parallel processes with ``--jobs``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multisite_rows import (DEMO_CONFIG, RANDOM, REPO, kit_scores, mean_predictor_row,  # noqa: E402
                            split_overrides, study_variants)

from peers import PEERS  # noqa: E402 - benchmarks/peers; optional packages load on use
from peers.common import frozen, monai_resnet18, resnet_kwargs_of, unit_range  # noqa: E402

PEER_LABELS = {"monai_stock": "stock MONAI SimCLR recipe (peer)", "nidl": "nidl SimCLR (peer)",
               "nidl_yaware": "nidl y-aware (peer)",  #: ``--peers`` rows; nidl also runs its y-aware estimator
               "": "random init, min-max input (peer control)"}  #: the random row's weights on the peers' input
SYN_INTERNAL, SYN_EXTERNAL = ["site-A", "site-B", "site-C"], ["site-D", "site-E"]
SYN_VALIDATION = ["site-F", "site-G"]  #: unseen sites of the --validation cohort (7 sites, D and E left out)
SYN_BUDGETS = {  # subjects per site, cohort grid = data.shape, view crop, epochs, batch
    "full": {"per_site": 100, "shape": 48, "crop": 40, "epochs": 60, "batch": 32},
    "cpu": {"per_site": 50, "shape": 32, "crop": 28, "epochs": 30, "batch": 32},
    "quick": {"per_site": 10, "shape": 24, "crop": 20, "epochs": 1, "batch": 8},
}


def synthetic_sites(validation: bool) -> tuple[int, list[str]]:
    """``(sites in the cohort, unseen sites)``: 5 sites with D, E unseen (the test), or 7 with F, G unseen."""
    return (7, SYN_VALIDATION) if validation else (5, SYN_EXTERNAL)


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
    rows = [{"label": job["label"], "seed": cfg.seed, **kit_scores(res["openbhb"]["pretrained"]), "reused_run": reused,
             "pretrain_seconds": train["seconds"], "eval_seconds": t2 - t1, "job_seconds": t2 - t0,
             "steps": train["steps"], "final_loss": train["final_loss"], "run_dir": str(run_dir)}]
    if "random init" in res["openbhb"]:  # the same architecture, seeded by the run's seed, untrained
        rows.append({"label": RANDOM, "seed": cfg.seed, **kit_scores(res["openbhb"]["random init"]),
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
    return [{"label": label, "seed": cfg.seed, **kit_scores(o, age[external]), "pretrain_seconds": t1 - t0,
             "job_seconds": time.time() - t0, **trained, "history": history, "run_dir": str(run_dir)}]


def _job(job: dict) -> list[dict]:
    return _synthetic_peer_run(job) if "peer" in job else _synthetic_run(job)


def run_synthetic(a: argparse.Namespace) -> dict:
    from medssl.config import load_config
    from medssl.data.synthetic import write_synthetic_cohort

    b = SYN_BUDGETS["quick" if a.quick else a.budget]
    variants = study_variants(a.variants)
    out = Path(a.out)
    n_sites, external = synthetic_sites(a.validation)
    cohort = out / f"cohort-seed{a.cohort_seed}-{b['per_site']}x{n_sites}-{b['shape']}"
    workers = 1 if (os.cpu_count() or 1) <= 2 else min(8, os.cpu_count())
    write_synthetic_cohort(cohort, n_subjects=n_sites * b["per_site"], n_sites=n_sites, shape=(b["shape"],) * 3,
                           seed=a.cohort_seed, workers=workers, progress=False)
    test_fraction = load_config(DEMO_CONFIG).data.test_fraction
    common = split_overrides(a.common)
    jobs, baselines = [], []
    for s in a.seeds:
        pre_card, eval_card, masks = write_split_cards(cohort, out, s, test_fraction, external)
        baselines.append(mean_predictor_row(s, masks["age"], masks))
        for i, (label, spec) in enumerate(variants.items()):
            budget = [f"data.card={pre_card}", f"data.root={cohort}", f"output_dir={out / f'run{i}-seed{s}'}",
                      "train.progress=false", f"data.shape=[{b['shape']},{b['shape']},{b['shape']}]",
                      f"augment.crop_size=[{b['crop']},{b['crop']},{b['crop']}]", f"train.epochs={b['epochs']}",
                      f"train.batch_size={b['batch']}"]
            jobs.append({"label": label, "cohort": str(cohort), "eval_card": str(eval_card), "threads": a.threads,
                         "external": external,
                         "random_init": i == 0, "reuse": a.reuse_runs,
                         "overrides": [*budget, *common, *split_overrides(spec), f"seed={s}"]})
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
