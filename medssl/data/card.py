"""Data cards: one YAML file per data set describing files, metadata roles and preprocessing.

The schema is documented in ``data_cards/README.md``. A card is looked up by name in
``./data_cards`` and in the ``data_cards`` folder shipped next to the package, or given as a
path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from medssl.config import ConfigError, _did_you_mean

ROLES = ("subject", "session", "site", "age", "sex", "label", "path", "split")


@dataclass
class DataCard:
    """A parsed data card (see data_cards/README.md for every field)."""

    name: str
    modality: str
    dimensionality: int
    manifest: str  #: table relative to the data root (TSV or CSV)
    columns: dict  #: role → column name (roles: subject, session, site, age, sex, label, path, split)
    path_template: str = ""  #: e.g. "{participant_id}/anat/{participant_id}_T1w.nii.gz" (or a `path` column)
    root: str = ""
    description: str = ""
    format: str = "auto"  #: reader to use: auto (by extension), nifti, dicom, dicom_series, itk, png
    preprocessing: dict = field(default_factory=dict)
    splits: dict = field(default_factory=dict)
    licence: str = ""
    citation: str = ""
    obtain: str = ""
    phi: str = ""
    source_file: str = ""


def card_search_paths() -> list[Path]:
    here = Path(__file__).resolve().parents[2] / "data_cards"
    return [Path.cwd() / "data_cards", here]


def list_cards() -> list[str]:
    names = set()
    for d in card_search_paths():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def load_card(name_or_path: str | Path) -> DataCard:
    """Load a card by name (``"ixi"``) or path (``"my_cards/site.yaml"``)."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        for d in card_search_paths():
            if (d / f"{name_or_path}.yaml").is_file():
                p = d / f"{name_or_path}.yaml"
                break
        else:
            raise ConfigError(f"unknown data card {str(name_or_path)!r}.{_did_you_mean(str(name_or_path), list_cards())} "
                              f"Valid cards: {', '.join(list_cards())}; or pass a path to a .yaml card")
    if not p.is_file():
        raise ConfigError(f"data card file {p} does not exist")
    raw = yaml.safe_load(p.read_text()) or {}
    valid = [f.name for f in fields(DataCard) if f.name != "source_file"]
    for key in raw:
        if key not in valid:
            raise ConfigError(f"{p}: unknown card key {key!r}.{_did_you_mean(key, valid)} Valid keys: {', '.join(valid)}")
    for key in ("name", "modality", "dimensionality", "manifest", "columns"):
        if key not in raw:
            raise ConfigError(f"{p}: required card key {key!r} is missing (see data_cards/README.md)")
    for role in raw["columns"]:
        if role not in ROLES:
            raise ConfigError(f"{p}: columns.{role} is not a known role.{_did_you_mean(role, ROLES)} Valid roles: {', '.join(ROLES)}")
    if "subject" not in raw["columns"]:
        raise ConfigError(f"{p}: columns.subject is required (subject-level splits need it)")
    if not raw.get("path_template") and "path" not in raw["columns"]:
        raise ConfigError(f"{p}: give either path_template or a columns.path column to locate each scan")
    return DataCard(**raw, source_file=str(p))
