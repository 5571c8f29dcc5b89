"""Run one evaluation protocol for a set of encoders and assemble the results dict.

:func:`medssl.api.evaluate` loads the encoder(s) and the data; this module decides, per
protocol, what is fitted on which rows and what goes into the report. Protocols:

========= ==============================================================================
default   linear probes (ridge age / logistic site…) + PCA map: what ``medssl evaluate RUN`` does
linear    the same probes with a t-SNE map
knn       k-nearest-neighbour probes;  mlp: one-hidden-layer MLP probes
site      site prediction, leave-site-out evaluation, ComBat baseline
openbhb   the OpenBHB challenge protocol (internal / external sites, L_c score)
fewshot   linear-probe curves at 1 %, 10 %, 100 % of the training labels (several seeds)
finetune  encoder + new head trained on the training subjects (early stopping on a validation split)
========= ==============================================================================

With an official validation split (``val_mask``: a data card's ``val`` rows) the probes of
default / linear / knn / mlp / fewshot choose their hyper-parameter on it and fine-tuning
early-stops on it; site and openbhb leave those rows out. Validation rows are never fitted
on and never scored as test rows. ``results["selection"]`` says what was used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from torch.utils.data import Dataset, Subset

from medssl.config import EVAL_TARGETS
from medssl.config_checks import check_targets
from medssl.eval import protocols as PR
from medssl.eval.fewshot import DEFAULT_FRACTIONS, DEFAULT_SEEDS
from medssl.eval.finetune import FinetuneOptions, finetune_and_score
from medssl.eval.probes import mean_predictor_mae

NOTES = {
    "probes": "Probes: standardisation + ridge (age; α by leave-one-subject-out CV, or by subject-grouped 5-fold CV when "
              "subjects have several scans) or logistic regression (site, sex, label; C by subject-grouped stratified "
              "5-fold CV, fewer when a class has fewer training subjects, balanced accuracy), fitted on the training "
              "subjects only and scored once on the held-out subjects (the folds each probe used: the probe settings table). "
              "Brain-age gap: linear bias correction fitted on out-of-fold predictions of the training subjects.",
    "knn": "kNN probe: standardised, L2-normalised embeddings; k chosen by subject-grouped CV on the training subjects.",
    "mlp": "MLP probe: one hidden layer (256 ReLU units), Adam (300 epochs) on standardised embeddings; L2 penalty by "
           "grouped CV.",
    "site": "Site effect: logistic site probe (chance = 1/#sites; lower = less site information); leave-site-out: the "
            "probe is fitted on all other sites and scored on the held-out one; ComBat: fitted on training subjects "
            "(covariates kept, never the probed target), applied to held-out subjects of the same sites.",
    "openbhb": "OpenBHB protocol (Dufumier et al. 2022 kit): Ridge α ∈ {1e-2…1e2} (5-fold, R²) and LogisticRegression "
               "(saga, max_iter 150) C ∈ {1e-2…1e2} (5-fold, balanced accuracy) on unscaled training embeddings of the "
               "internal sites; L_c = MAE_ext · BAcc^0.3 (lower is better).",
    "fewshot": "Few-label curves: subject-level subsets of the training labels (stratified for classes, nested across "
               "fractions); each point is scored on the full held-out split; mean ± SD over seeds.",
    "finetune": "Fine-tuning: a copy of the encoder + a new linear head, AdamW with separate encoder/head learning "
                "rates, early stopping on the validation loss of a subject-level validation split of the training "
                "subjects; scored once on the held-out subjects.",
    "val_probes": "Official validation split ({n} scans), instead of the cross-validation named above: each value of "
                  "the probe's hyper-parameter (α, C, k or MLP penalty; same grid and score) is fitted on the training "
                  "subjects and scored on the validation scans; the best is refitted on the training subjects. "
                  "Validation scans are never fitted on and never scored as test scans.",
    "val_finetune": "Fine-tuning early-stops on the validation loss of the official validation split ({n} scans) "
                    "instead of an inner split of the training subjects (which are all trained on).",
    "val_left_out": "The {n} scans of the official validation split are left out of this protocol.",
}


@dataclass
class EvalOptions:
    """What to evaluate and how (CLI flags of ``medssl evaluate``)."""

    protocol: str = "default"
    targets: tuple[str, ...] = ()  #: () → the run config's (an export's recorded) eval.targets (+ "label" for finetune/fewshot when present)
    seed: int | None = None  #: None → the run's seed
    n_boot: int = 1000  #: bootstrap replicates for the 95 % intervals (0: none)
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    external_sites: tuple[str, ...] = ()  #: OpenBHB external site names (default: the last site)
    map_method: str = ""  #: "" → pca for default, tsne otherwise; "none" → no map
    tta_flip: bool = False
    random_init: bool | None = None  #: None → the run config's eval.random_init_baseline
    val_fraction: float = 0.2  #: fine-tuning validation subjects (from the training split)
    fewshot_finetune: bool = False  #: fewshot protocol: also fine-tuning curves (one run per fraction × seed)
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)

    def __post_init__(self) -> None:
        for name in ("targets", "external_sites"):  # from Python, targets="age" means ("age",), not ("a", "g", "e")
            if isinstance(getattr(self, name), str):
                setattr(self, name, (getattr(self, name),))
        for name in ("fractions", "seeds"):  # fractions=0.1, seeds=3: that one (a number is not iterable)
            if isinstance(getattr(self, name), (int, float)):
                setattr(self, name, (getattr(self, name),))
        if self.protocol not in PR.PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; valid: {', '.join(PR.PROTOCOLS)}")
        check_targets("--targets", self.targets)
        if self.n_boot < 0:
            raise ValueError(f"--n-boot must be >= 0 (0: no intervals), got {self.n_boot}")
        if not all(0 < f <= 1 for f in self.fractions):
            raise ValueError(f"--fractions must be label fractions in (0, 1], got {list(self.fractions)}")


def _site_codes(names: list[str], vocab: list[str]) -> list[int]:
    missing = [n for n in names if n not in vocab]
    if missing:
        raise ValueError(f"external site(s) {missing} not in the data; sites are {vocab}")
    return [vocab.index(n) for n in names]


def _selection(p: str, opts: EvalOptions, n_val: int) -> str:
    """How hyper-parameters / the fine-tuning epoch were chosen, in words (report ``info``)."""
    if p in ("site", "openbhb"):
        return "cross-validation on train" + (f" (the {n_val} official validation scans are left out)" if n_val else "")
    if n_val:
        return f"official validation split (n={n_val})"
    if p == "finetune":
        return f"{opts.val_fraction:.0%} inner subject split of train"
    return "cross-validation on train" + (f"; fine-tuning: {opts.val_fraction:.0%} inner subject split of train"
                                          if p == "fewshot" and opts.fewshot_finetune else "")


def _without(feats: dict[str, dict], drop: np.ndarray) -> dict[str, dict]:
    """``feats`` without the rows ``drop`` (every per-row array)."""
    return {n: {k: np.asarray(v)[~drop] for k, v in f.items()} for n, f in feats.items()}


def run_protocol(opts: EvalOptions, feats: dict[str, dict], train_mask: np.ndarray, vocab: dict, seed: int,
                 targets: list[str], encoders=None, datasets: dict | None = None, device: str = "cpu",
                 val_mask: np.ndarray | None = None, pretrain_sites: list[str] | None = None) -> dict:
    """The results of ``opts.protocol`` for every encoder.

    Args:
        opts: protocol and settings.
        feats: ``{encoder name: extract_features output}`` over the same rows.
        train_mask: (N,) True for training-split rows; the other rows are test rows, except
            those of ``val_mask``.
        vocab: code → name tables (``site``, ``sex``, ``label``).
        seed: seed for CV shuffles, bootstrap and fine-tuning.
        targets: metadata columns to evaluate.
        encoders: ``{name: nn.Module}`` (fine-tuning only).
        datasets: ``{"all": dataset over the rows of feats}`` (fine-tuning only).
        device: fine-tuning device.
        val_mask: (N,) True for rows of an official validation split (None / all False: none).
            The probes choose their hyper-parameter on them, fine-tuning early-stops on them;
            site / openbhb leave them out.
        pretrain_sites: names of the sites in the encoder's pretraining split (``openbhb``: is an external
            site among them?); None: the training rows of ``feats``, the run's own split.

    Returns:
        The results dict for :func:`medssl.eval.report.write_report` (minus ``info``), with
        ``"selection"``: how hyper-parameters were chosen, in words.
    """
    p, results = opts.protocol, {"protocol": opts.protocol, "vocab": vocab, "notes": []}
    val_mask = np.zeros(len(train_mask), bool) if val_mask is None else np.asarray(val_mask, bool)
    if (val_mask & train_mask).any():
        raise ValueError("run_protocol: a row is in both train_mask and val_mask")
    n_val = int(val_mask.sum())
    results["selection"] = _selection(p, opts, n_val)
    if n_val and p in ("site", "openbhb"):  # these protocols refit on other row sets: keep them to train + test
        feats, train_mask = _without(feats, val_mask), train_mask[~val_mask]
        val_mask = np.zeros(len(train_mask), bool)
    val = val_mask if val_mask.any() else None
    first = next(iter(feats.values()))
    if p != "finetune":  # every other protocol fits probes (or a map) on the embeddings
        for name, f in feats.items():
            check_finite_embeddings(name, f)
    if p in ("default", "linear", "knn", "mlp"):
        kind = "linear" if p in ("default", "linear") else p
        results["probes"] = {n: PR.probe_targets(f, train_mask, targets, kind, seed, opts.n_boot, {"label": vocab.get("label")},
                                                 val_mask=val) for n, f in feats.items()}
        results["notes"].append(NOTES["probes" if kind == "linear" else kind])
    elif p == "site":
        results["site"] = {n: PR.site_effect(f, train_mask, seed, opts.n_boot, [t for t in targets if t != "site"],
                                             vocab.get("site")) for n, f in feats.items()}
    elif p == "openbhb":
        ext = _site_codes(list(opts.external_sites), vocab.get("site", [])) if opts.external_sites else None
        results["openbhb"] = {n: PR.openbhb_protocol(f, train_mask, ext, opts.n_boot, seed) for n, f in feats.items()}
        for o in results["openbhb"].values():
            o["external_site_names"] = [vocab["site"][c] for c in o["external_sites"]] if vocab.get("site") else []
        o = next(iter(results["openbhb"].values()))
        seen = bool(np.any(train_mask & np.isin(first["site"], o["external_sites"]))) if pretrain_sites is None \
            else bool(set(o["external_site_names"]) & set(pretrain_sites))
        if seen:
            results["notes"].append("The encoder's pretraining split contained scans of the external site(s) (without "
                                    "labels); in the OpenBHB challenge those sites are unseen at every stage.")
    elif p == "fewshot":
        results["fewshot"] = {n: PR.fewshot_protocol(f, train_mask, targets, opts.fractions, opts.seeds, val_mask=val)
                              for n, f in feats.items()}
        if opts.fewshot_finetune:
            for n, enc in encoders.items():
                results["fewshot"][f"{n} fine-tuned"] = _finetune_curves(opts, enc, first, train_mask, targets,
                                                                         datasets["all"], device, val)
            results["notes"].append(NOTES["finetune"])
    elif p == "finetune":
        results["finetune"] = {n: _finetune_targets(opts, enc, first, train_mask, targets, datasets["all"], seed, device,
                                                    vocab.get("label"), val)
                               for n, enc in encoders.items()}
    results["notes"].append(NOTES.get(p, ""))
    if p not in ("site", "openbhb"):
        section = results["probes" if p in ("default", "linear", "knn", "mlp") else p]
        evaluated = set().union(*(set(per) for per in section.values()))
        results["skipped_targets"] = {t: why for t, why in skipped_targets(p, first, targets, train_mask, val).items()
                                      if t not in evaluated}
        if not evaluated and (usable := [t for t in EVAL_TARGETS if t not in targets and
                                         not skipped_targets(p, first, [t], train_mask, val)]):
            hint = f"; these data can be evaluated with --targets {' '.join(usable)}"
            results["skipped_targets"] = {t: why + hint for t, why in results["skipped_targets"].items()}
        results["notes"] += [f"Target {t!r} was not evaluated: {why}." for t, why in results["skipped_targets"].items()]
    if n_val:
        finetuned = p == "finetune" or (p == "fewshot" and opts.fewshot_finetune)
        keys = ["val_left_out"] if p in ("site", "openbhb") else ["val_probes"] * (p != "finetune") + ["val_finetune"] * finetuned
        results["notes"] += [NOTES[k].format(n=n_val) for k in keys]
    results["notes"] = list(dict.fromkeys(n for n in results["notes"] if n))  # each note once (knn, mlp)
    age = np.asarray(first.get("age", np.zeros(0)), float)
    if "age" in targets and age.size and not np.isnan(age).all() and p not in ("site", "openbhb"):
        # (site / openbhb score other row sets: their own baselines are in their results)
        ok, test = ~np.isnan(age), ~train_mask & ~val_mask
        results["baselines"] = {"mean_predictor_mae": mean_predictor_mae(age[train_mask & ok], age[test & ok])}
        results["test_age"] = age[test & ok]
    method = opts.map_method or ("pca" if p == "default" else "tsne")
    if method != "none" and p != "finetune":
        results["maps"] = {n: PR.embedding_maps(f, method, seed) for n, f in feats.items()}
    return results


def check_finite_embeddings(name: str, feats: dict) -> None:
    """Raise a ValueError naming the scans (``feats["index"]``: record index, i.e. row of the manifest)
    whose embedding holds NaN or ±inf, e.g. from a NaN voxel in the image (a NaN background)."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(feats["features"], float)).all(axis=1))
    if bad.size:
        rows = np.asarray(feats.get("index", np.arange(len(feats["features"]))))[bad]
        raise ValueError(f"{name} embeddings: {bad.size} of {len(feats['features'])} scans hold NaN or infinite values "
                         f"(record index in manifest.tsv: {rows[:10].tolist()}{' …' if bad.size > 10 else ''}); check "
                         "those images for NaN/inf voxels (e.g. a NaN background) and the encoder weights")


def skipped_targets(protocol: str, feats: dict, targets: list[str], train_mask: np.ndarray,
                    val_mask: np.ndarray | None = None) -> dict[str, str]:
    """``{target: why}`` for the requested targets that ``protocol`` leaves out (reported, never silent)."""
    out = {t: why for t in targets if (why := PR.why_skipped(feats, t, train_mask, val_mask=val_mask))}
    for t in targets:
        if t in out:
            continue
        if protocol == "finetune" and t not in ("age", "label"):
            out[t] = "fine-tuning covers age and label only"
        elif protocol == "fewshot" and PR.task_of(feats, t) == "multilabel":
            out[t] = "few-label curves cover single-label targets only"
        elif protocol == "finetune":
            out[t] = "fewer than 3 training subjects or 2 held-out scans have a value"
    return out


def _finetune_rows(opts: EvalOptions, encoder, feats: dict, target: str, train_rows: np.ndarray, test_rows: np.ndarray,
                   dataset: Dataset, seed: int, device: str, label_names: list[str] | None, n_boot: int,
                   val_rows: np.ndarray | None = None) -> dict:
    """Fine-tune on ``train_rows``, early-stop on ``val_rows`` (official validation rows) or, when None,
    on a subject-level inner split of ``train_rows`` (``opts.val_fraction``); score on ``test_rows``."""
    from medssl.data.manifest import Record
    from medssl.data.splits import subject_split

    subjects = np.asarray(feats["subject"])
    if val_rows is not None:
        fit_rows, early_stopping = train_rows, f"official validation split (n={len(val_rows)})"
    else:
        site = np.asarray(feats.get("site", np.zeros(len(subjects), int)))
        recs = [Record(path=str(i), subject=str(subjects[i]), site=str(site[i])) for i in train_rows]
        inner = np.array(subject_split(recs, opts.val_fraction, seed + 1, stratify="site"))
        if not (inner == "test").any():  # tiny subsets: keep at least one validation subject
            inner[subjects[train_rows] == subjects[train_rows][-1]] = "test"
        fit_rows, val_rows = train_rows[inner == "train"], train_rows[inner == "test"]
        early_stopping = f"{opts.val_fraction:.0%} inner subject split of train"
    task = PR.task_of(feats, target)
    y = np.asarray(feats[target])
    y = y if task == "regression" else y.astype(int)
    fo = replace(opts.finetune, task=task, seed=seed, device=device)
    out = finetune_and_score(encoder, Subset(dataset, fit_rows.tolist()), y[fit_rows], Subset(dataset, val_rows.tolist()),
                             y[val_rows], Subset(dataset, test_rows.tolist()), y[test_rows], fo, subjects[test_rows], n_boot,
                             label_names if task == "multilabel" else None)
    out["n_fit"], out["n_val"], out["early_stopping"] = int(len(fit_rows)), int(len(val_rows)), early_stopping
    return out


def _target_rows(feats: dict, target: str, train_mask: np.ndarray, val_mask: np.ndarray | None):
    """``(train rows, test rows, validation rows or None)`` (indices) of the rows with a known ``target``."""
    tr, te = PR.target_rows(feats, target, train_mask, val_mask)
    va = PR.val_rows(feats, target, val_mask)
    return np.flatnonzero(tr), np.flatnonzero(te), None if va is None else np.flatnonzero(va)


def _fine_tunable(feats: dict, target: str, tr_rows: np.ndarray, te_rows: np.ndarray) -> bool:
    """At least 3 training subjects and 2 test scans with a value of ``target``, and for a class target 2 training
    classes (the probes skip a single one too); otherwise :func:`skipped_targets` says why it was left out."""
    one_class = PR.task_of(feats, target) == "classification" and len(np.unique(np.asarray(feats[target])[tr_rows])) < 2
    return len(np.unique(np.asarray(feats["subject"])[tr_rows])) >= 3 and len(te_rows) >= 2 and not one_class


def _finetune_targets(opts: EvalOptions, encoder, feats: dict, train_mask: np.ndarray, targets: list[str],
                      dataset: Dataset, seed: int, device: str, label_names: list[str] | None = None,
                      val_mask: np.ndarray | None = None) -> dict:
    """Fine-tune one copy of ``encoder`` per target (age → regression, label → classes / findings)."""
    out = {}
    for target in targets:
        if target not in ("age", "label") or target not in feats:
            continue
        tr_rows, te_rows, va_rows = _target_rows(feats, target, train_mask, val_mask)
        if _fine_tunable(feats, target, tr_rows, te_rows):
            out[target] = _finetune_rows(opts, encoder, feats, target, tr_rows, te_rows, dataset, seed, device,
                                         label_names, opts.n_boot, va_rows)
    return out


def _finetune_curves(opts: EvalOptions, encoder, feats: dict, train_mask: np.ndarray, targets: list[str],
                     dataset: Dataset, device: str, val_mask: np.ndarray | None = None) -> dict:
    """Few-label curves of fine-tuning (age, single-label diagnosis): :func:`label_fraction_curve` (+ ``"chance"``
    for classes, as the probe curves).
    With ``val_mask`` every point early-stops on the full validation split."""
    from medssl.eval.fewshot import label_fraction_curve

    out = {}
    for target in targets:
        if target not in ("age", "label") or target not in feats or PR.task_of(feats, target) == "multilabel":
            continue
        tr_rows, te_rows, va_rows = _target_rows(feats, target, train_mask, val_mask)
        if not _fine_tunable(feats, target, tr_rows, te_rows):  # as the finetune protocol (a curve needs test scans)
            continue
        task = PR.task_of(feats, target)
        metric = "mae" if task == "regression" else "balanced_accuracy"

        def fit_score(rows, s, target=target, te_rows=te_rows, va_rows=va_rows):
            return _finetune_rows(opts, encoder, feats, target, rows, te_rows, dataset, s, device, None, 0, va_rows)

        out[target] = label_fraction_curve(fit_score, tr_rows, np.asarray(feats["subject"]), metric, opts.fractions,
                                           opts.seeds, None if task == "regression" else np.asarray(feats[target]))
        if task == "classification":  # as the probe curves (and fine-tuning's own scores): 1 / training classes
            out[target]["chance"] = 1.0 / len(np.unique(np.asarray(feats[target])[tr_rows]))
    return out


def multilabel_matrix(labels: list[str], sep: str = "|", negatives: tuple[str, ...] = ("No Finding", "none", "normal")
                      ) -> tuple[np.ndarray, list[str]]:
    """(N, K) 0/1 finding matrix from label strings such as ``"Effusion|Infiltration"``.

    Empty labels give a row of −1 (unknown); ``negatives`` (e.g. ChestX-ray14's "No Finding")
    give a row of zeros. Findings are sorted by name.
    """
    parts = [[p.strip() for p in (lab or "").split(sep) if p.strip()] for lab in labels]
    names = sorted({p for ps in parts for p in ps if p not in negatives})
    y = np.zeros((len(labels), len(names)), int)
    for i, ps in enumerate(parts):
        if not ps:
            y[i] = -1
        for p in ps:
            if p in names:
                y[i, names.index(p)] = 1
    return y, names
