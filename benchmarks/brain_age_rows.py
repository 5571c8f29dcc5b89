"""The rows of the brain-age table (``benchmarks/brain_age_ixi.py``): what each measures and which a run produces.

:data:`ROWS` lists every row as ``(key, label, kind)`` in table order, kind one of baseline, probe,
peer, finetune. :func:`active_rows` and :func:`peer_rows` select the rows of a run from its
``Budget.methods`` / ``scratch`` / ``finetune`` and its ``--peers``; :func:`rows_of` reads them back
from a summary.
"""

from __future__ import annotations

ROWS = (  # key, label, kind
    ("mean", "training-fold mean age", "baseline"),
    ("voxels", "Ridge on downsampled raw voxels", "baseline"),
    ("random_cnn_probe", "random-init ResNet-18 + Ridge probe", "baseline"),
    ("random_vit_probe", "random-init ViT + Ridge probe", "baseline"),
    ("scratch_ft", "ResNet-18 supervised from scratch", "baseline"),
    ("simclr_probe", "SimCLR + Ridge probe", "probe"),
    ("genesis_probe", "Models Genesis + Ridge probe", "probe"),
    ("mae_probe", "MAE (ViT) + Ridge probe", "probe"),
    ("yaware_probe", "y-aware (in-fold) + Ridge probe", "probe"),
    ("monai_stock_probe", "stock MONAI SimCLR recipe + Ridge probe", "peer"),
    ("nidl_probe", "nidl SimCLR + Ridge probe", "peer"),
    ("nidl_yaware_probe", "nidl y-aware (in-fold) + Ridge probe", "peer"),
    ("simclr_ft", "SimCLR + fine-tuning", "finetune"),
    ("genesis_ft", "Models Genesis + fine-tuning", "finetune"),
    ("mae_ft", "MAE (ViT) + fine-tuning", "finetune"),
    ("yaware_ft", "y-aware (in-fold) + fine-tuning", "finetune"),
)


LABEL_FREE = ("simclr", "genesis", "mae")
YAWARE_PEERS = ("nidl",)  #: peers with a y-aware estimator: with ``yaware`` in ``methods`` they also pretrain in-fold


def active_rows(methods: str, scratch: bool = True, finetune: bool = True) -> tuple:
    """The rows of :data:`ROWS` that a run with these SSL ``methods`` produces (baselines always; the random ViT
    only with MAE; the from-scratch CNN only with ``scratch`` and ``finetune``; fine-tuned rows only with
    ``finetune``)."""
    chosen = set(filter(None, methods.split(",")))  # "" = baselines only
    unknown = chosen - set(LABEL_FREE) - {"yaware"}
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)} in Budget.methods; choose from {LABEL_FREE + ('yaware',)}")
    optional = {"random_vit_probe": "mae" in chosen, "scratch_ft": scratch and finetune}
    keep = lambda key, kind: (kind == "baseline" and optional.get(key, True)
                              or key.rsplit("_", 1)[0] in chosen and (finetune or kind != "finetune"))
    return tuple(r for r in ROWS if keep(r[0], r[2]))


def peer_rows(peers: tuple, methods: str) -> tuple:
    """The peer rows of :data:`ROWS` for these ``peers``: SimCLR on all scans for each, and in-fold y-aware for
    the :data:`YAWARE_PEERS` when ``methods`` has ``yaware``."""
    yaware = "yaware" in methods.split(",")
    keys = [f"{n}_probe" for n in peers] + [f"{n}_yaware_probe" for n in peers if yaware and n in YAWARE_PEERS]
    return tuple(r for r in ROWS if r[0] in keys)


def rows_of(summary: dict) -> tuple:
    """The rows of :data:`ROWS` present in a summary (or a seed's ``mae``), in table order."""
    return tuple(r for r in ROWS if r[0] in summary)
