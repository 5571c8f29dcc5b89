"""Brain age on real MRI: IXI T1 (Hammersmith, one site, 138 subjects with an age), 5-fold subject CV.

Per seed (``--seeds``), on the ``shared_ixi`` data card (143 real T1w head scans, 2 mm, not
skull-stripped; 138 with an age; see ../shared/data/ixi_t1_hh_2mm/PROVENANCE.md):

1. **Label-free pretraining on all 143 scans** (the issue's protocol: no age is read):
   SimCLR (Chen et al., ICML 2020; NT-Xent τ = 0.1) and Models Genesis (Zhou et al., MedIA 2021)
   with a 3D ResNet-18, MAE (He et al., CVPR 2022; mask ratio 0.75) with a 3D ViT.
2. **y-aware contrastive pretraining inside each CV fold** (Dufumier et al., MICCAI 2021; RBF
   kernel on age, σ in years): it reads ages, so it is pretrained five times per seed, each time
   on the training subjects of that fold only. The fold's test subjects are never seen (not even
   their images): the JSON lists, per fold, the subjects each y-aware run was trained on, and the
   CI test checks they are disjoint from the fold's test subjects.
3. **Age prediction with 5-fold subject-level CV** (folds stratified on age quintiles, one scan
   per subject): a Ridge probe on frozen embeddings (standardisation + RidgeCV, α by efficient
   leave-one-out CV on the fold's training subjects) and full fine-tuning (Huber loss, AdamW,
   flips + small affine augmentation, early stopping on 20 % of the fold's training subjects).
4. **Baselines in the same run**: the training-fold mean age; Ridge on downsampled raw voxels;
   the same encoders randomly initialised (+ Ridge probe); the same CNN trained supervised from
   scratch with the same fine-tuning recipe.
5. With ``--peers``: the same SimCLR budget (epochs, batch, lr, crop, network, initial weights) run
   by peer recipes (``benchmarks/peers``: the stock MONAI recipe, nidl) on all scans without ages,
   and nidl's y-aware estimator inside each fold like medssl's y-aware row, each scored by the same
   Ridge probe ("<peer> + Ridge probe" rows). The peers see each scan min-max rescaled to [0, 1],
   their input convention, at pretraining and at the probe.

Every hyper-parameter is fixed in :class:`Budget` before looking at any test fold; the only
data-driven choices (Ridge α, fine-tuning epoch) use the training subjects of the fold. The
reported MAE of a seed is over the pooled out-of-fold predictions of all 138 subjects; tables
give mean ± SD over seeds.

    python benchmarks/brain_age_ixi.py --quick --json /tmp/q.json          # CI smoke run (seconds)
    python benchmarks/brain_age_ixi.py --device cuda --seeds 0 1 2         # full run (GPU)
    python benchmarks/brain_age_ixi.py --merge runs/ixi0/result.json runs/ixi1/result.json

The code lives in modules next to this script: ``brain_age_data.py`` (Budget, scans, folds),
``brain_age_encoders.py`` (encoders, pretraining, peers, fine-tuning), ``brain_age_rows.py`` (the
rows of the table) and ``brain_age_report.py`` (summary, verdict, table, figure); this file runs the
folds of each seed and holds the command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from medssl.eval.finetune import FinetuneOptions
from medssl.eval.probes import regression_probe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_runs import (add_data_root, apply_set, command_line, machine, merge_seeds, merged_runs,  # next to this script
                       refuse_earlier_runs, run_folder, wall_line, write_result)
from peers import usable, versions  # benchmarks/peers; optional packages are imported only when a peer runs
from brain_age_data import QUICK, Budget, age_folds, load_ixi, write_resampled_copy
from brain_age_encoders import (cnn, features, finetune_fold, ft_augment, peer_encoder_kwargs, pretrain, pretrain_peer,
                                vit, voxel_features)
from brain_age_rows import LABEL_FREE, active_rows, peer_rows
from brain_age_report import TARGETS, format_table, plot, summarise, verdict

REPO = Path(__file__).resolve().parents[1]


def pretrain_folders(b: Budget, seeds: list[int]) -> list[str]:
    """The pretraining run folders (under ``--out``) of a run: ``seed<S>_<method>`` per label-free method and
    ``seed<S>_yaware_fold<K>`` per fold, as :func:`run_seed` names them."""
    rows = {r[0] for r in active_rows(b.methods, b.scratch, b.finetune)}
    names = [m for m in LABEL_FREE if f"{m}_probe" in rows]
    names += [f"yaware_fold{k}" for k in range(b.folds)] if "yaware_probe" in rows else []
    return [f"seed{s}_{name}" for s in seeds for name in names]


def run_seed(data: dict, b: Budget, seed: int, out: Path, device: str, resume: bool = False,
             peers: tuple = ()) -> dict:
    """All rows of one seed: pooled out-of-fold predictions → MAE per row."""
    t0 = time.time()
    ages = data["ages"][data["labelled"]]
    n, all_rows = len(ages), np.arange(len(data["ages"]))
    times, pre, rows = {}, {}, active_rows(b.methods, b.scratch, b.finetune) + peer_rows(peers, b.methods)
    for name in [m for m in LABEL_FREE if any(r[0] == f"{m}_probe" for r in rows)]:  # label-free: on every scan
        t = time.time()
        pre[name] = pretrain(name, data, all_rows, b, seed, out / f"seed{seed}_{name}", device, resume)
        times[f"pretrain_{name}"] = round(time.time() - t, 1)
        print(f"  seed {seed}: {name} pretrained in {times[f'pretrain_{name}']:.0f} s", flush=True)
    peer_runs = {name: pretrain_peer(name, data, all_rows, b, seed, device) for name in peers}  # no ages read
    random_cnn = cnn(b, 10_000 + seed)
    feats = {"random_cnn_probe": features(random_cnn, data, device), "voxels": voxel_features(data, b.voxel_pool),
             **{f"{k}_probe": features(v["encoder"], data, device) for k, v in {**pre, **peer_runs}.items()}}
    if "mae" in pre:
        feats["random_vit_probe"] = features(vit(b, 10_000 + seed), data, device)
    pred = {key: np.full(n, np.nan) for key, _, _ in rows}
    ft_encoders = {key: enc for key, enc in (("scratch_ft", random_cnn), *((f"{k}_ft", v["encoder"]) for k, v in pre.items()))
                   if key in pred}
    folds, fold_info = age_folds(ages, b.folds, seed), []
    for k, te in enumerate(folds):
        tr = np.setdiff1d(np.arange(n), te)
        pred["mean"][te] = ages[tr].mean()
        for key, x in feats.items():
            pred[key][te] = regression_probe(x[tr], ages[tr], x[te], ages[te], n_boot=0)["pred"]
        t, fold_encoders, ya_rows = time.time(), dict(ft_encoders), []
        if "yaware_probe" in pred:
            ya_rows = data["labelled"][tr]  # y-aware reads ages: this fold's training subjects only
            ya = pretrain("yaware", data, ya_rows, b, seed, out / f"seed{seed}_yaware_fold{k}", device, resume)
            times.setdefault("pretrain_yaware_folds", []).append(round(time.time() - t, 1))
            x = features(ya["encoder"], data, device)
            pred["yaware_probe"][te] = regression_probe(x[tr], ages[tr], x[te], ages[te], n_boot=0)["pred"]
            if "yaware_ft" in pred:
                fold_encoders["yaware_ft"] = ya["encoder"]
        for name in [r[0][: -len("_yaware_probe")] for r in rows if r[0].endswith("_yaware_probe")]:
            run = pretrain_peer(name, data, data["labelled"][tr], b, seed, device, yaware=True)  # as y-aware: no test subject
            peer_runs.setdefault(f"{name}_yaware_folds", []).append({f: run[f] for f in ("seconds", "history")})
            x = features(run["encoder"], data, device)
            pred[f"{name}_yaware_probe"][te] = regression_probe(x[tr], ages[tr], x[te], ages[te], n_boot=0)["pred"]
        t = time.time()
        ft = {key: finetune_fold(enc, data, tr, te, b, seed, device) for key, enc in fold_encoders.items()}
        for key, run in ft.items():
            pred[key][te] = run["pred"]
        if fold_encoders:
            times.setdefault("finetune_folds", []).append(round(time.time() - t, 1))
        fold_info.append({"test_subjects": [data["records"][i].subject for i in data["labelled"][te]],
                          "yaware_pretrained_on": [data["records"][i].subject for i in ya_rows],
                          **{f"finetune_{k}": {key: run[k] for key, run in ft.items()}
                             for k in ("best_epoch", "val_mae", "lr_encoder", "val_loss_by_lr")}})
        print(f"  seed {seed} fold {k + 1}/{b.folds}: " + "  ".join(
            f"{key} {np.abs(pred[key][te] - ages[te]).mean():.2f}" for key in pred), flush=True)
    mae = {key: float(np.abs(pred[key] - ages).mean()) for key in pred}
    out = {"seed": seed, "mae": mae, "pred": {k: v.round(3).tolist() for k, v in pred.items()},
           "age": ages.tolist(), "subjects": [data["records"][i].subject for i in data["labelled"]],
           "folds": fold_info, "pretrain": {k: v["summary"] for k, v in pre.items()}, "seconds": times,
           "wall_seconds": round(time.time() - t0, 1)}
    if peers:
        out["peer_pretrain"] = {k: v if isinstance(v, list) else {"seconds": v["seconds"], "history": v["history"]}
                                for k, v in peer_runs.items()}
        out["peer_encoder_kwargs"] = peer_encoder_kwargs(b)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_root(p, "ixi_t1_hh_2mm/")
    p.add_argument("--quick", action="store_true", help="smoke run: 24 scans at 8 mm, 3 folds, 1 epoch, tiny networks")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default="", help="run folder (default runs/brain_age_ixi[_quick]; a --quick run "
                   "without --out or --resume replaces runs/brain_age_ixi_quick, keeping its scan cache)")
    p.add_argument("--json", default="", help="also write the result JSON here")
    p.add_argument("--figure", default="", help="default <out>/brain_age_ixi.png; give docs/img/brain_age_ixi.png to update the published figure")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--merge", nargs="+", default=[], metavar="JSON", help="no training: merge earlier runs' seeds")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a Budget field")
    p.add_argument("--resume", action="store_true",
                   help="continue each pretraining from the latest checkpoint in <out>/seed<S>_<method>[_fold<K>] "
                        "(after a SIGTERM stop; a finished run's encoder is reused without further steps; a checkpoint of other "
                        "pretraining settings is refused, ssl_epochs may grow)")
    p.add_argument("--cache", default="", help="preprocessed-scan cache folder (default <out>/cache); runs in parallel "
                   "can share one built beforehand with --prepare-only")
    p.add_argument("--prepare-only", action="store_true", help="only build the cache, then exit")
    p.add_argument("--peers", nargs="*", default=[], metavar="PEER",
                   help="also run these peer recipes (benchmarks/peers: monai_stock, nidl) with the SimCLR budget on "
                        "all scans, nidl also y-aware in-fold when methods has yaware, each scored by the same Ridge "
                        "probe; a peer that cannot run here is skipped with the reason (not retrained by --resume)")
    p.add_argument("--write-copy", default="", metavar="DIR", help="only write DIR/ixi_t1_hh_2mm resampled to "
                   "--set spacing (uint8, as the originals) to carry to another machine, then exit")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    b = apply_set(replace(Budget(), **(QUICK if a.quick else {})), a.set)
    for key, check in (("ft_head_init", lambda: FinetuneOptions(head_init=b.ft_head_init)),
                       ("ft_augment", lambda: ft_augment((8, 8, 8), b.ft_augment))):
        try:
            check()
        except ValueError as e:
            raise SystemExit(f"--set {key}={getattr(b, key)}: {e}") from None
    if a.write_copy:
        write_resampled_copy(Path(a.data_root), Path(a.write_copy) / "ixi_t1_hh_2mm", b.spacing)
        return {}
    default = REPO / "runs" / f"brain_age_ixi{'_quick' if a.quick else ''}"  # a fresh --quick run replaces it
    out = run_folder(a.out, default, a.quick and not (a.resume or a.merge or a.prepare_only),
                     keep=Path(a.cache) if a.cache else default / "cache")
    t0 = time.time()
    info = machine(a.device)
    if a.merge:
        per_seed, results = merge_seeds(a.merge, same=("budget", "quick", "peers"), out=out)
        b, info, a.quick = Budget(**results[0]["budget"]), results[0]["machine"], results[0]["quick"]
    else:
        if not (a.resume or a.prepare_only):  # every folder checked before the first one trains
            refuse_earlier_runs([out / f for f in pretrain_folders(b, a.seeds)])
        data = load_ixi(Path(a.data_root), b, Path(a.cache) if a.cache else out / "cache")
        if a.prepare_only:
            return {}
        print(f"IXI: {len(data['records'])} scans, {len(data['labelled'])} with an age, grid {data['shape']} at "
              f"{b.spacing} mm; budget {asdict(b)}", flush=True)
        peers, skipped = usable(a.peers, 3)
        for name, why in skipped.items():
            print(f"  peer {name} skipped: {why}", flush=True)
        per_seed = [run_seed(data, b, s, out, a.device, a.resume, peers) for s in a.seeds]
    summary = summarise(per_seed)
    result = {"benchmark": "brain_age_ixi", "budget": asdict(b), "seeds": [s["seed"] for s in per_seed],
              "summary": summary, "verdict": verdict(summary), "targets": TARGETS, "per_seed": per_seed,
              "quick": a.quick, "machine": info, "wall_seconds": round(time.time() - t0, 1),
              "command": command_line("brain_age_ixi.py", argv)}
    if a.merge:  # the peers of the merged runs (their machine record already lists the packages), their wall times
        result.update({k: results[0][k] for k in ("peers", "peers_skipped") if k in results[0]})
        result.update(merged_runs(a.merge, results, per_seed, "wall_seconds"))
    elif a.peers:
        result.update(peers=list(peers), peers_skipped=skipped)
        result["machine"]["peer_packages"] = versions()
    fig = Path(a.figure) if a.figure else out / "brain_age_ixi.png"
    plot(result, fig)
    result["figure"] = str(fig)
    write_result(result, out, a.json)
    print(f"\n{format_table(summary, len(per_seed), b.folds)}\n\n" + "\n".join(f"{k}: {v}" for k, v in result["verdict"].items())
          + f"\n\nbudget: {asdict(b)}\n{wall_line(result)} on {info['device']}; "
            f"JSON {out / 'result.json'}; figure {fig}")
    return result


if __name__ == "__main__":
    main()
