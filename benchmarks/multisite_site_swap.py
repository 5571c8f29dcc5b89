"""Which scanner property of an unseen site makes trained encoders misread its ages?

Takes a finished ``benchmarks/multisite_study.py synthetic`` folder (its cohort, split cards and
pretraining runs), regenerates the subjects of one unseen site with some of its scanner
parameters (:class:`medssl.data.synthetic_sites.SiteProfile`) taken from a donor site — same
subjects, anatomy, noise draws and ages, only those parameters change — and re-runs the OpenBHB
evaluation of every run on the altered cohort. The probes are fitted on the internal training
subjects, which do not change, so any change in the site's error is the encoder's reading of
the swapped property. Prints, per swap, the site's mean signed age error (years; negative =
read too young) and MAE for each run label and the random-init encoder, mean over seeds.

    python benchmarks/multisite_site_swap.py runs/mspeers --site site-E --donor site-F --variants SimCLR y-aware
    python benchmarks/multisite_site_swap.py runs/mspeers --site site-E --donor site-B --swaps blur
    python benchmarks/multisite_site_swap.py --from-json docs/results/multisite_site_swap_E.json \
        --figure docs/img/multisite_site_swap_E.png      # no computation: table and figure of an earlier run

Swaps (``--swaps``, default all): ``none`` (regenerated unchanged: must reproduce the study),
``blur``, ``noise``, ``bias`` (bias field), ``intensity`` (scale, offset, gamma), ``pose``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multisite_rows import RANDOM  # noqa: E402 - the study's row label of the random-init encoder
from seed_runs import command_line, host, pyplot, save_figure  # noqa: E402

SWAPS = {"none": (), "blur": ("blur_sigma_mm",), "noise": ("noise_sigma",), "bias": ("bias_linear", "bias_quadratic"),
         "intensity": ("intensity_scale", "intensity_offset", "gamma"), "pose": ("pose_shift_mm", "pose_rotation_deg")}
SWAP_TITLES = {"none": "nothing (as is)", "blur": "blur", "noise": "noise level", "bias": "bias field",
               "intensity": "intensity scale,\noffset, gamma", "pose": "head pose"}


def cohort_spec(cohort: Path):
    """The :class:`~medssl.data.synthetic.SyntheticCohortSpec` a cohort folder was written with."""
    from medssl.data.synthetic import SyntheticCohortSpec

    p = json.loads((cohort / "dataset_description.json").read_text())["GeneratedBy"][0]["Parameters"]
    return SyntheticCohortSpec(n_subjects=p["n_subjects"], n_sites=p["n_sites"], shape=tuple(p["shape"]),
                               seed=p["seed"], fov_mm=p["fov_mm"])


def write_swapped_cohort(cohort: Path, out: Path, site: str, donor: str, fields: tuple[str, ...]) -> Path:
    """Copy ``cohort`` to ``out`` with the subjects of ``site`` regenerated using ``donor``'s ``fields``."""
    from medssl.data.synthetic import _write_one
    from medssl.data.synthetic_sites import site_profiles

    spec = cohort_spec(cohort)
    profiles = site_profiles(26)  # site-A … site-Z; each profile depends only on its index
    names = [p.name for p in profiles]
    if site not in names[:spec.n_sites]:
        raise SystemExit(f"--site {site}: the cohort has sites {names[:spec.n_sites]}")
    if donor not in names:
        raise SystemExit(f"--donor {donor}: not a synthetic site name (site-A … site-Z)")
    k, sites = names.index(site), profiles[:spec.n_sites]
    sites[k] = replace(sites[k], **{f: getattr(profiles[names.index(donor)], f) for f in fields})
    spec.__dict__["sites"] = sites  # the cached property the generator reads
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(cohort, out)
    for i in range(k, spec.n_subjects, spec.n_sites):
        _write_one((spec, i, str(out)))
    return out


def site_errors(eval_dir: Path, kind: str, site_code: int, internal_codes: list[int]) -> tuple[float, float]:
    """(mean signed error, MAE) in years on one site, the kit's age probe fitted on the internal training rows."""
    from medssl.eval.openbhb import fit_openbhb_probes

    d = np.load(glob.glob(str(eval_dir / "features" / f"{kind}-*.npz"))[0], allow_pickle=False)
    with open(eval_dir / "manifest.tsv", newline="") as f:
        split = {r["subject"]: r["split"] for r in csv.DictReader(f, delimiter="\t")}
    train = np.array([split[s] == "train" for s in d["subject"]]) & np.isin(d["site"], internal_codes)
    probe, _ = fit_openbhb_probes(d["features"][train], d["age"][train], d["site"][train])
    m = d["site"] == site_code
    err = probe.predict(d["features"][m]) - d["age"][m]
    return float(err.mean()), float(np.abs(err).mean())


def print_table(res: dict) -> None:
    """The summary of a result: per swap and row label, mean signed error / MAE (years), mean over seeds."""
    summary = res["summary"]
    print(f"\n{res['site']} regenerated with {res['donor']}'s parameters; mean signed error / MAE (years) over seeds")
    print(f"{'swap':<11}" + "".join(f"{lab:>26}" for lab in next(iter(summary.values()))))
    for swap, per in summary.items():
        print(f"{swap:<11}" + "".join(f"{s['bias']:>16.2f} / {s['mae']:6.2f}" for s in per.values()))


def plot(res: dict, path: Path) -> None:
    """Two panels, one row per swap, one bar per row label: the site's mean signed error and its MAE (years,
    mean over seeds; dots = seeds where the result holds them); dotted lines = the unswapped ('none') values."""
    plt = pyplot()
    summary = res["summary"]
    swaps, labels = list(summary), sorted(dict.fromkeys(lab for per in summary.values() for lab in per),
                                          key=lambda lab: lab.startswith("random init"))  # random init last
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.55 * len(swaps) * len(labels) / 2 + 1.8), sharey=True)
    height = 0.8 / len(labels)
    for ax, key, title in zip(axes, ("bias", "mae"), ("mean signed error (y; − = read too young)", "MAE (y) ↓")):
        for j, lab in enumerate(labels):
            color = "C7" if lab.startswith("random init") else f"C{j}"
            rows = [(i + (j - (len(labels) - 1) / 2) * height, summary[w][lab]) for i, w in enumerate(swaps)
                    if lab in summary[w]]
            ax.barh([y for y, _ in rows], [s[key] for _, s in rows], height=height, color=color, alpha=0.8, label=lab)
            for y, s in rows:
                ax.plot(s.get(f"{key}_per_seed", []), [y] * len(s.get(f"{key}_per_seed", [])), "k.", ms=4)
            if lab in summary.get("none", {}):
                ax.axvline(summary["none"][lab][key], color=color, ls=":", lw=1)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_yticks(range(len(swaps)), [SWAP_TITLES.get(w, w) for w in swaps])
    axes[0].invert_yaxis()
    axes[1].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=len(labels))
    n = sorted({s["n"] for per in summary.values() for s in per.values()})
    fig.suptitle(f"{res['site']} regenerated with {res['donor']}'s scanner parameters: the site's age error per "
                 f"swap, mean over {'/'.join(map(str, n))} seeds (dotted: unswapped)", fontsize=10)
    save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", nargs="?", help="a finished multisite_study.py synthetic --out folder")
    ap.add_argument("--site", default="site-E", help="the unseen site whose subjects are regenerated")
    ap.add_argument("--donor", default="site-F", help="the site whose scanner parameters are swapped in")
    ap.add_argument("--swaps", nargs="+", default=list(SWAPS), choices=list(SWAPS))
    ap.add_argument("--variants", nargs="+", default=None, help="run labels to re-evaluate (default: all)")
    ap.add_argument("--out", default=None, help="work folder (default STUDY/site_swap)")
    ap.add_argument("--figure", default=None, help="figure PNG (default OUT/figure.png; with --from-json, next to JSON)")
    ap.add_argument("--from-json", default="", metavar="JSON", help="no computation: table and figure of an earlier run")
    a = ap.parse_args(argv)
    if a.from_json:
        res = json.loads(Path(a.from_json).read_text())
        print_table(res)
        plot(res, Path(a.figure or Path(a.from_json).parent / "figure.png"))
        return res
    if a.study is None:
        ap.error("give the STUDY folder to run the swaps, or --from-json JSON to redraw an earlier run")
    from medssl.api import evaluate
    from medssl.eval.driver import EvalOptions

    study = Path(a.study)
    result = json.loads((study / "result.json").read_text())
    cohorts = sorted(study.glob("cohort-*"))
    labels = {Path(r["run_dir"]).name: r["label"] for r in result["rows"]
              if Path(r.get("run_dir", "")).name.startswith("run") and r["label"] != RANDOM}
    runs = sorted(r for r, lab in labels.items() if a.variants is None or lab in a.variants)
    if len(cohorts) != 1 or not runs:
        raise SystemExit(f"{study}: expected one cohort-* folder and finished run*-seed* folders "
                         "(the --out folder of multisite_study.py synthetic)")
    internal, external = result["budget"]["internal_sites"], result["budget"]["external_sites"]
    if a.site not in external:
        raise SystemExit(f"--site {a.site} is not an unseen site of this study ({external})")
    evaluated = sorted(internal + external)  # the eval card's site codes are the sorted names
    code, internal_codes = evaluated.index(a.site), [evaluated.index(s) for s in internal]
    out = Path(a.out or study / "site_swap")
    table, t0 = {}, time.time()
    for swap in a.swaps:
        cohort = write_swapped_cohort(cohorts[0], out / f"cohort-{swap}", a.site, a.donor, SWAPS[swap])
        for run in runs:
            dst = out / f"{swap}-{run}"
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(study / run, dst, ignore=shutil.ignore_patterns("eval-*", "cache", "tensorboard"))
            seed = run.rsplit("seed", 1)[1]
            card = study / "splits" / f"card-eval-seed{seed}.yaml"
            opts = EvalOptions(external_sites=tuple(external), map_method="none", n_boot=0,
                               random_init=run.startswith("run0"))
            res = evaluate(dst, progress=False, protocol="openbhb", data=str(card), root=str(cohort), options=opts)
            eval_dir = Path(res["info"]["output directory"])
            kinds = {labels[run]: "pretrained", **({"random init": "random_init"} if run.startswith("run0") else {})}
            for label, kind in kinds.items():
                table.setdefault(swap, {}).setdefault(label, []).append(site_errors(eval_dir, kind, code, internal_codes))
    summary = {}
    for swap, per in table.items():
        summary[swap] = {lab: {"bias": float(np.mean([e[0] for e in v])), "mae": float(np.mean([e[1] for e in v])),
                               "n": len(v), "bias_per_seed": [e[0] for e in v], "mae_per_seed": [e[1] for e in v]}
                         for lab, v in per.items()}
    fig = Path(a.figure or out / "figure.png")
    res = {"study": str(study), "site": a.site, "donor": a.donor, "summary": summary, "wall_seconds": time.time() - t0,
           "figure": str(fig), "command": command_line("multisite_site_swap.py", argv), "machine": host()}
    print_table(res)
    plot(res, fig)
    (out / "result.json").write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
