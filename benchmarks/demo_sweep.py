"""Run variants of the demo recipe × seeds on a synthetic cohort; report mean ± sd of the probes.

Used for two things (results in docs/benchmarks.md):

* choosing the demo recipe on an independent cohort (``--cohort-seed 1``; the demo itself
  reports on the seed-0 cohort), and
* the loss-family study: SimCLR vs y-aware vs L^exp vs L^thr vs ε-SupInfoNCE + FairKL(site)
  at the same budget over 3 training seeds (``--study``).

Each variant is ``label=override;override;…`` (overrides of configs/pretrain/demo.yaml).

    python benchmarks/demo_sweep.py --out /tmp/sweep --jobs 4 --variant "simclr=method.name=simclr;method.loss={temperature: 0.1}"
    python benchmarks/demo_sweep.py --study --seeds 0 1 2 --common "train.device=cuda" --out /tmp/study
    python benchmarks/demo_sweep.py --quick --study --jobs 1 --out /tmp/q   # CI smoke run (seconds per variant)

``--quick``: 30 subjects on a 24³ grid, 20³ crops, one epoch of batch 8 (the budget of
``multisite_study.py --quick``); the same code path, numbers meaningless.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from seed_runs import command_line, host, pyplot, save_figure  # next to this script

STUDY = {
    "SimCLR": "method.name=simclr;method.loss={temperature: 0.1}",
    "y-aware": "method.name=yaware",
    "L^exp": "method.name=contrastive_regression;method.loss={temperature: 0.1, sigma: 2.0}",
    "L^thr": "method.name=contrastive_regression;method.loss={name: threshold, temperature: 0.1, sigma: 2.0}",
    "eps-SupInfoNCE + FairKL(site)": "method.name=supinfonce;method.loss={temperature: 0.1, epsilon: 0.25};method.fairkl_weight=1.0",
}
QUICK = {"subjects": 30, "shape": 24, "overrides": ["data.shape=[24,24,24]", "augment.crop_size=[20,20,20]",
                                                    "train.epochs=1", "train.batch_size=8", "train.warmup_epochs=0"]}


def _run(job: tuple[str, str, str, list[str]]) -> dict:
    import torch

    torch.set_num_threads(2)
    from medssl.api import REPO_ROOT, evaluate, pretrain
    from medssl.config import load_config

    label, cohort, out, overrides = job
    t0 = time.time()
    cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "demo.yaml",
                      [f"data.root={cohort}", f"output_dir={out}", "train.progress=false", *overrides])
    if (Path(out) / "config.yaml").is_file():  # an earlier sweep's run here: start it again from scratch
        shutil.rmtree(out)
    res = evaluate(pretrain(cfg, progress=False), progress=False)
    p = res["probes"]
    return {"label": label, "overrides": overrides, "seed": cfg.seed, "seconds": time.time() - t0,
            "age_mae": p["pretrained"]["age"]["mae"], "site_bacc": p["pretrained"]["site"]["balanced_accuracy"],
            "random_age_mae": p["random init"]["age"]["mae"], "random_site_bacc": p["random init"]["site"]["balanced_accuracy"]}


def parse_variant(text: str) -> tuple[str, str]:
    """``"label=a.b=1;c.d=2"`` → (label, overrides); without a label the overrides name themselves."""
    head, sep, rest = text.partition("=")
    if sep and "." not in head and head not in ("seed", "output_dir"):
        return head, rest
    return text or "demo.yaml", text


def summarise(rows: list[dict]) -> list[dict]:
    """(mean, sample sd with ddof=1) per label, in first-seen order; sd is None for one run (no fake ± 0)."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        sel = [r for r in rows if r["label"] == label]
        agg = {"label": label, "n": len(sel)}
        for key in ("age_mae", "site_bacc", "random_age_mae", "random_site_bacc"):
            v = np.array([r[key] for r in sel])
            agg[key] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None)
        out.append(agg)
    return out


def _mean_sd(pair: tuple, width: int, digits: int) -> str:
    """``mean ± sd`` of a :func:`summarise` pair; the mean alone when there is no sd (one run)."""
    mean, sd = pair
    return f"{mean:{width}.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def plot(summary: list[dict], path: Path) -> None:
    plt = pyplot()

    labels = [s["label"] for s in summary] + ["random init"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in ((axes[0], "age_mae", "age MAE (years) ↓"), (axes[1], "site_bacc", "site balanced accuracy ↓")):
        means = [s[key][0] for s in summary] + [summary[0]["random_" + key][0]]
        sds = [s[key][1] or 0.0 for s in summary] + [summary[0]["random_" + key][1] or 0.0]
        ax.barh(labels, means, xerr=sds, color=["C0"] * len(summary) + ["C7"])
        ax.set_title(title)
        ax.invert_yaxis()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="sweep")
    ap.add_argument("--cohort-seed", type=int, default=1)
    ap.add_argument("--subjects", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variant", action="append", default=[], help="label=override;override;…  (repeatable)")
    ap.add_argument("--study", action="store_true", help="run the loss-family study variants")
    ap.add_argument("--common", default="", help="overrides added to every variant, separated by ;")
    ap.add_argument("--quick", action="store_true", help="smoke run for CI: tiny cohort and budget (see above)")
    a = ap.parse_args(argv)
    from medssl.data.synthetic import write_synthetic_cohort

    out, t0 = Path(a.out), time.time()
    cohort = out / f"cohort-seed{a.cohort_seed}"
    subjects, side = (QUICK["subjects"], QUICK["shape"]) if a.quick else (a.subjects, 48)
    # a kept cohort is reused only when it is this one (otherwise FileExistsError says so)
    write_synthetic_cohort(cohort, n_subjects=subjects, n_sites=3, shape=(side,) * 3, seed=a.cohort_seed, progress=False)
    variants = dict(STUDY) if a.study else {}
    for v in a.variant or ([] if a.study else [""]):
        variants.update([parse_variant(v)])
    common = [*(QUICK["overrides"] if a.quick else []), *(o.strip() for o in a.common.split(";") if o.strip())]
    jobs = [(label, str(cohort), str(out / f"run{i}-seed{s}"), [*common, *[o.strip() for o in spec.split(";") if o.strip()],
                                                                 f"seed={s}"])
            for i, (label, spec) in enumerate(variants.items()) for s in a.seeds]
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as ex:
            rows = list(ex.map(_run, jobs))
    else:
        rows = [_run(job) for job in jobs]
    summary = summarise(rows)
    print(f"\ncohort seed {a.cohort_seed}, {subjects} subjects, training seeds {a.seeds}; common: {' '.join(common) or '-'}")
    print(f"{'variant':34s} {'age MAE (y)':>16s} {'site BAcc':>16s}")
    for s in summary:
        print(f"{s['label'][:34]:34s} {_mean_sd(s['age_mae'], 8, 2)} {_mean_sd(s['site_bacc'], 9, 3)}")
    r = summary[0]
    print(f"{'random init (same encoder)':34s} {_mean_sd(r['random_age_mae'], 8, 2)} {_mean_sd(r['random_site_bacc'], 9, 3)}")
    res = {"cohort": {"seed": a.cohort_seed, "subjects": subjects, "shape": side}, "common": common, "rows": rows,
           "summary": summary, "seeds": a.seeds, "wall_seconds": round(time.time() - t0, 1), "machine": host(),
           "command": command_line("demo_sweep.py", argv)}
    (out / "sweep.json").write_text(json.dumps(res, indent=2))
    plot(summary, out / "sweep.png")
    return res


if __name__ == "__main__":
    main()
