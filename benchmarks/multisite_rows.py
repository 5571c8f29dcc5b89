"""Rows of the multi-site study (``benchmarks/multisite_study.py``) that both parts, synthetic and ixi, write.

* :data:`DEMO_CONFIG` — the demo recipe every variant starts from; :data:`RANDOM` — the label of the
  random-init encoder's row;
* :func:`study_variants` — the ``STUDY`` variants of ``benchmarks/demo_sweep.py`` named by ``--variants``;
  :func:`split_overrides` — a ``;``-separated override string as a list;
* :func:`kit_scores` — the fields of a method's row from one OpenBHB result
  (:func:`medssl.eval.openbhb.run_openbhb`); :func:`mean_predictor_row` — the training-mean baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_sweep import STUDY  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "pretrain" / "demo.yaml"
RANDOM = "random init (same encoder)"


def kit_scores(o: dict, age_ext: np.ndarray | None = None) -> dict:
    """The kit's scores of one :func:`medssl.eval.openbhb.run_openbhb` result (``age_ext`` defaults to
    ``o["age_ext"]``), plus on the external subjects: the standard error of the MAE (``mae_ext_se``; how
    finely the external set can rank methods) and the mean signed error (``ext_bias``, years)."""
    err = np.asarray(o["pred_ext"]) - np.asarray(o["age_ext"] if age_ext is None else age_ext)
    return {"mae_int": o["mae_age"], "mae_ext": o["ext_mae_age"], "bacc_site": o["bacc_site"],
            "mae_ext_se": float(np.abs(err).std(ddof=1) / np.sqrt(len(err))), "ext_bias": float(err.mean()),
            "score": o["challenge_metric"], "n_train": o["n_train"], "n_internal": o["n_internal"],
            "n_external": o["n_external"], "age_alpha": o["selected_age_alpha"], "site_C": o["selected_site_C"]}


def mean_predictor_row(seed: int, age: np.ndarray, masks: dict) -> dict:
    m = float(age[masks["train"]].mean())
    return {"label": "training-mean predictor", "seed": seed,
            "mae_int": float(np.abs(age[masks["internal"]] - m).mean()),
            "mae_ext": float(np.abs(age[masks["external"]] - m).mean())}


def split_overrides(spec: str) -> list[str]:
    return [o.strip() for o in spec.split(";") if o.strip()]


def study_variants(names: list[str] | None) -> dict[str, str]:
    """The STUDY variants named on the command line (all by default); unknown names are an error."""
    unknown = sorted(set(names or []) - set(STUDY))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; valid: {list(STUDY)}")
    return {k: v for k, v in STUDY.items() if not names or k in names}
