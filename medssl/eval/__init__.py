"""Evaluators: embeddings → probes, fine-tuning, site effect, OpenBHB, few-label curves, report.

Modules (one concept each): ``features`` (frozen-encoder embeddings, cached), ``metrics``
(MAE/RMSE/R²/r, brain-age gap, balanced accuracy/F1/AUC, bootstrap CIs), ``probes`` (ridge,
logistic, kNN, MLP, multi-label), ``site`` + ``combat`` (site prediction, leave-site-out,
ComBat harmonisation), ``openbhb`` (the challenge protocol and score), ``finetune``,
``fewshot``, ``embedding_map``, ``protocols`` / ``driver`` (what each ``medssl evaluate
--protocol`` runs), ``report`` / ``plots`` / ``compare``. See ``docs/evaluation.md``.

The names below are imported lazily (``from medssl.eval import run_openbhb``), so importing
one module does not import them all.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "extract_features": "features", "regression_probe": "probes", "classification_probe": "probes",
    "knn_probe": "probes", "mlp_probe": "probes", "multilabel_probe": "probes", "mean_predictor_mae": "probes",
    "bootstrap_ci": "metrics", "brain_age_gap": "metrics", "fit_age_bias": "metrics", "challenge_score": "openbhb",
    "run_openbhb": "openbhb", "ComBat": "combat", "site_prediction": "site", "leave_site_out": "site",
    "harmonisation_baseline": "site", "FinetuneOptions": "finetune", "predict": "finetune",
    "finetune_and_score": "finetune", "label_fraction_curve": "fewshot", "EvalOptions": "driver",
    "run_protocol": "driver", "write_report": "report", "format_table": "report", "compare_table": "compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"medssl.eval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'medssl.eval' has no attribute {name!r}")
