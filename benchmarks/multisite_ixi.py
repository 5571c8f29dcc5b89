"""Part ``ixi`` of the multi-site study (``benchmarks/multisite_study.py``): real DLMUSE ROI volumes of IXI.

291 subjects (``../shared/data/ixi_dlmuse_roi_multisite``): internal Guys + HH, split by
:func:`ixi_split` (70/30, stratified by site), external IOP. Log volumes are standardised with
training statistics; a small MLP (:func:`feature_mlp`) is trained with each ``STUDY`` loss on
feature-space views (:class:`FeatureViews`: Gaussian noise + feature dropout) by
:func:`train_feature_method`; baselines: Ridge on the ROI features, Ridge after ComBat, the
random-init MLP and the training-mean predictor. :func:`run_ixi` scores them all under the OpenBHB
protocol.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multisite_rows import (DEMO_CONFIG, RANDOM, kit_scores, mean_predictor_row, split_overrides,  # noqa: E402
                            study_variants)

IXI_EXTERNAL = "IOP"
IXI_BUDGETS = {  # MLP encoder and its training; fixed before any run, the same for every loss
    "full": {"hidden": 256, "out_dim": 128, "proj_hidden": 128, "proj_dim": 32, "noise": 0.2, "dropout": 0.2,
             "epochs": 300, "batch": 64, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 10},
    "quick": {"hidden": 64, "out_dim": 32, "proj_hidden": 32, "proj_dim": 16, "noise": 0.2, "dropout": 0.2,
              "epochs": 3, "batch": 64, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 1},
}


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
    cfg = load_config(DEMO_CONFIG, [*split_overrides(spec), f"seed={seed}"])
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
    return {"label": label, "seed": seed, **kit_scores(o, d["age"][m["external"]]), **extra}


def run_ixi(a: argparse.Namespace) -> dict:
    import torch

    from medssl.eval.combat import ComBat

    torch.set_num_threads(a.threads)
    b = IXI_BUDGETS["quick" if a.quick else "full"]
    variants = study_variants(a.variants)
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
        rows.append(mean_predictor_row(seed, d["age"], m))
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
