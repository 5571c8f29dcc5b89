"""Quality benchmark on real MedMNIST scans: SimCLR pretraining → linear probe and fine-tuning.

Per seed, on the official splits of the shared data cards (``shared_pneumoniamnist`` 2D chest
X-ray 28², ``shared_adrenalmnist3d`` 3D adrenal shape masks 28³):

1. SimCLR (Chen et al., ICML 2020; NT-Xent, τ = 0.1) on the **training images without labels**,
   with a ResNet-18 whose stem suits 28-pixel inputs (3×3 kernel, no max-pool);
2. linear probe on frozen embeddings (standardisation + logistic regression; C chosen by
   **validation** AUC, refitted on train) for the pretrained encoder and its random-init twin;
3. fine-tuning (full, early stopping on the **validation** loss) of the pretrained encoder and
   of the same CNN from random init (= supervised training from scratch);
4. few-label curve: 1 %, 10 %, 100 % of the training labels (class-stratified subsets, nested),
   SSL (probe and fine-tuning) vs from scratch;
5. with ``methods`` containing ``mae`` (``--set methods=mae`` or ``simclr,mae``): MAE (He et al.,
   CVPR 2022; mask ratio 0.75, per-patch normalised targets) of a ViT on the same training images,
   scored by the same probe and fine-tuning, with its random-init ViT and the same ViT trained from
   scratch as baselines;
6. with ``--peers``: the same SimCLR budget (epochs, batch, lr, crop, network, initial weights)
   run by peer recipes (``benchmarks/peers``: the stock MONAI recipe, lightly, nidl), each scored
   by the same linear probe ("<peer> + linear probe" rows).

The test split is scored once per model. AUC is the Mann–Whitney AUC of the positive class,
ACC the accuracy of argmax predictions (as in MedMNIST v2, Yang et al., Sci Data 2023).
Numbers are mean ± SD over seeds with the 95 % bootstrap interval of each test score in the JSON.

    python benchmarks/medmnist.py --dataset pneumonia --seeds 0 1 --out runs/medmnist_pneumonia
    python benchmarks/medmnist.py --dataset adrenal --seeds 0 1 --out runs/medmnist_adrenal
    python benchmarks/medmnist.py --dataset pneumonia --quick --json /tmp/q.json    # CI smoke run
    python benchmarks/medmnist.py --dataset pneumonia --seeds 0 --peers monai_stock lightly --set fractions=1.0

The code lives in modules next to this script: ``medmnist_data.py`` (cards, Budget, splits),
``medmnist_pretrain.py`` (encoders, SimCLR, MAE, peers), ``medmnist_scoring.py`` (linear probe,
fine-tuning, test scores) and ``medmnist_report.py`` (rows, summary, tables, figure); this file runs
each seed's rows, merges earlier runs and holds the command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from medssl.eval.features import extract_features
from medssl.eval.fewshot import subsample_subjects
from medssl.eval.finetune import FinetuneOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_runs import (add_data_root, apply_set, command_line, machine, merge_seeds, merged_runs,  # next to this script
                       refuse_earlier_runs, run_folder, wall_line, write_result)
from peers import usable, versions  # benchmarks/peers; optional packages are imported only when a peer runs
from medmnist_data import CARDS, DEFAULTS, QUICK, Budget, Images, load_splits
from medmnist_pretrain import (make_encoder, make_vit, method_names, peer_encoder_kwargs, pretrain_mae, pretrain_peers,
                               pretrain_simclr)
from medmnist_scoring import finetune_score, linear_probe
from medmnist_report import (PAPER, TARGETS, format_curve, format_table, peer_names, peers_left_out, plot, summarise,
                             table_rows)

REPO = Path(__file__).resolve().parents[1]


def run_seed(data: dict, dataset: str, b: Budget, seed: int, out_dir: Path, device: str, n_boot: int,
             peers: tuple = (), resume: bool = False) -> dict:
    spatial_dims, size = data["train"][0].ndim - 2, data["train"][0].shape[-1]
    methods = method_names(b)
    t0 = time.time()
    res, encoders, ft_lr = {"seed": seed, "few_label": {}}, {}, {}
    if "simclr" in methods:
        ssl = pretrain_simclr(data["train"][0], spatial_dims, b, seed, out_dir / f"simclr_seed{seed}", device,
                              resume)
        res["ssl_pretrain"] = {"seconds": round(time.time() - t0, 1), **ssl["summary"]}
        encoders.update(ssl=ssl["encoder"], random=make_encoder(spatial_dims, b, 10_000 + seed))
        ft_lr.update(**({"ssl_finetune": ("ssl", b.ft_lr, b.ft_encoder_lrs)} if b.ssl_finetune else {}),
                     **({"scratch": ("random", b.ft_lr, b.ft_encoder_lrs)} if b.scratch else {}))
    if "mae" in methods:
        t1 = time.time()
        mae = pretrain_mae(data["train"][0], spatial_dims, b, seed, out_dir / f"mae_seed{seed}", device, resume)
        res["mae_pretrain"] = {"seconds": round(time.time() - t1, 1), **mae["summary"]}
        encoders.update(mae=mae["encoder"], random_vit=make_vit(spatial_dims, size, b, 10_000 + seed))
        ft_lr.update(**({"mae_finetune": ("mae", b.vit_ft_lr, ())} if b.ssl_finetune else {}),
                     **({"vit_scratch": ("random_vit", b.vit_ft_lr, ())} if b.scratch else {}))
    peer_runs = pretrain_peers(data["train"][0], spatial_dims, b, seed, device, peers)
    encoders.update({f"peer:{name}": run["encoder"] for name, run in peer_runs.items()})
    probe_key = {"ssl": "ssl_probe", "random": "random_probe", "mae": "mae_probe", "random_vit": "random_vit_probe",
                 **{f"peer:{n}": f"{n}_probe" for n in peer_runs}}
    feats = {}
    for name, enc in encoders.items():
        feats[name] = {s: (extract_features(enc, Images(x), 256, device)["features"], y) for s, (x, y) in data.items()}
    y_train = data["train"][1]
    all_rows = np.arange(len(y_train))
    if peer_runs:
        res["peer_pretrain"] = {name: {"seconds": run["seconds"], "history": run["history"],
                                       "encoder_kwargs": peer_encoder_kwargs(b)} for name, run in peer_runs.items()}
    for fraction in b.fractions:
        rows = all_rows if fraction >= 1 else subsample_subjects(all_rows, all_rows.astype(str), fraction, seed, y=y_train)
        point = {"n_train": len(rows),
                 **{probe_key[name]: linear_probe(f, rows, seed, n_boot) for name, f in feats.items()},
                 **{key: finetune_score(encoders[enc], data, rows, b, fraction, seed, device, n_boot, lr, enc_lrs)
                    for key, (enc, lr, enc_lrs) in ft_lr.items()}}
        res["few_label"][str(fraction)] = point
        print(f"  seed {seed} labels {fraction:>5.0%} (n={len(rows)}): "
              + "  ".join(f"{k} AUC {v['auc']:.3f}" for k, v in point.items() if isinstance(v, dict)), flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    return res


def merge_runs(paths: list[str], dataset: str, out: Path) -> tuple[list[dict], Budget, bool, dict, dict]:
    """Per-seed results of earlier result JSONs (checked to share dataset and budget) sorted by seed, their
    budget, quick flag, wall times, commands and machines (:func:`seed_runs.merged_runs`) and the first run's machine record."""
    per_seed, results = merge_seeds(paths, same=("dataset", "budget", "quick"), out=out)
    if results[0]["dataset"] != dataset:
        raise SystemExit(f"--merge {paths[0]}: dataset {results[0]['dataset']!r}, not --dataset {dataset!r}")
    budget = {**results[0]["budget"], "fractions": tuple(results[0]["budget"]["fractions"])}
    walls = merged_runs(paths, results, per_seed, "seconds")
    return per_seed, Budget(**budget), results[0]["quick"], walls, results[0]["machine"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(CARDS), required=True)
    add_data_root(p, "medmnist_*")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (subset, 1 epoch, narrow CNN)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", default="", help="run folder (checkpoints, result.json); default runs/medmnist_<dataset>, "
                   "with --quick runs/medmnist_<dataset>_quick, which a --quick run without --out or --resume replaces")
    p.add_argument("--json", default="", help="also write the result JSON here")
    p.add_argument("--figure", default="", help="figure path (default <out>/medmnist_<dataset>[_mae][_peers].png; "
                                                "give a docs/img/ path to update a published figure)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                   help="no training: merge the per-seed results of earlier runs (same dataset and budget) into one "
                        "table, JSON and figure (e.g. seeds run as parallel processes)")
    p.add_argument("--resume", action="store_true",
                   help="continue SSL pretraining from the latest checkpoint in <out>/<method>_seed<S>/checkpoints "
                        "(after a SIGTERM stop; a finished run's encoder is reused without further steps; a checkpoint of other "
                        "pretraining settings is refused, ssl_epochs may grow)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a Budget field, e.g. ssl_epochs=20")
    p.add_argument("--peers", nargs="*", default=[], metavar="PEER",
                   help="also run these peer SimCLR recipes (benchmarks/peers: monai_stock, lightly, nidl) with the same "
                        "SSL budget and score them with the same linear probe; a peer that cannot run here is skipped "
                        "with its reason")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    b = apply_set(replace(DEFAULTS[a.dataset], **(QUICK[a.dataset] if a.quick else {})), a.set)
    method_names(b)  # fail on a typo before loading data
    if 1.0 not in b.fractions or not all(0 < f <= 1 for f in b.fractions):  # the table and figure are at 100 %
        raise SystemExit(f"--set fractions={','.join(map(str, b.fractions))}: label fractions must lie in (0, 1] and "
                         "include 1.0 (the table's 100 % row), e.g. fractions=0.1,1.0")
    try:
        FinetuneOptions(head_init=b.ft_head_init)
    except ValueError as e:
        raise SystemExit(f"--set ft_head_init={b.ft_head_init}: {e}") from None
    default = REPO / "runs" / f"medmnist_{a.dataset}{'_quick' if a.quick else ''}"  # a fresh --quick run replaces it
    out = run_folder(a.out, default, a.quick and not (a.resume or a.merge))
    t0 = time.time()
    if a.merge:
        per_seed, b, a.quick, walls, merged_machine = merge_runs(a.merge, a.dataset, out)
        a.seeds = [s["seed"] for s in per_seed]
    else:
        if not a.resume:  # every method's and seed's folder (run_seed's names) checked before the first one trains
            refuse_earlier_runs([out / f"{m}_seed{s}" for s in a.seeds for m in method_names(b)])
        data = load_splits(a.dataset, Path(a.data_root), b.limit)
        peers, skipped = usable(a.peers, data["train"][0].ndim - 2)
        print(f"{a.dataset}MNIST: train/val/test = {', '.join(str(len(v[1])) for v in data.values())}; "
              f"budget {asdict(b)}" + "".join(f"\n  peer {k} skipped: {v}" for k, v in skipped.items()), flush=True)
        per_seed = [run_seed(data, a.dataset, b, s, out, a.device, a.n_boot, peers, a.resume) for s in a.seeds]
    summary = summarise(per_seed)
    result = {"dataset": a.dataset, "card": CARDS[a.dataset], "budget": asdict(b), "seeds": a.seeds,
              "summary": summary, "published": {k: {"auc": v[0], "acc": v[1]} for k, v in PAPER[a.dataset].items()},
              "targets": TARGETS[a.dataset], "per_seed": per_seed, "quick": a.quick,
              "machine": machine(a.device),
              "command": command_line("medmnist.py", argv),
              "wall_seconds": round(time.time() - t0, 1)}
    if a.peers and not a.merge:
        result.update(peers=peer_names(per_seed), peers_skipped=skipped)
        result["machine"]["peer_packages"] = versions()
    left_out = peers_left_out(per_seed)
    if a.merge:
        result.update(**walls, machine={**merged_machine, "note": "merged from separate runs"},
                      peers=peer_names(per_seed), **({"peers_left_out": left_out} if left_out else {}))
    suffix = "".join(f"_{m}" for m in method_names(b) if m != "simclr") + ("_peers" if peer_names(per_seed) else "")
    fig = Path(a.figure) if a.figure else out / f"medmnist_{a.dataset}{suffix}.png"
    plot(result, fig)
    result["figure"] = str(fig)
    write_result(result, out, a.json)
    m = result["machine"]
    print(f"\n{format_table(a.dataset, summary, len(a.seeds), table_rows(per_seed))}\n\nfew-label curve (test AUC, mean ± SD over seeds)\n"
          f"{format_curve(per_seed, b.fractions)}\n\nbudget: {asdict(b)}\n{wall_line(result)} on {m['device']} "
          f"({m['torch_threads']} torch thread(s)); JSON {out / 'result.json'}; figure {fig}")
    if left_out:
        print("peer row(s) left out of the table (not scored in every merged seed): " + "; ".join(
            f"{n} (scored in seed(s) {v['scored_in_seeds']}, missing in {v['missing_in_seeds']})" for n, v in left_out.items()))
    return result


if __name__ == "__main__":
    main()
