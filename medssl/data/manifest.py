"""Manifests: the table of records (one scan each) that everything downstream consumes."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from medssl.data.card import DataCard


class ManifestError(ValueError):
    """A problem in the metadata table; the message names the table, row and column."""


@dataclass
class Record:
    """One scan with its metadata. Missing values: age NaN, other fields ""."""

    path: str
    subject: str
    session: str = ""
    site: str = ""
    age: float = math.nan  #: years
    sex: str = ""
    label: str = ""
    split: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _read_table(path: Path) -> tuple[list[str], list[dict]]:
    delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except FileNotFoundError:
        raise ManifestError(f"metadata table {path} does not exist; check data.root / the card's manifest") from None


def build_manifest(card: DataCard, root: str | Path | None = None, check_files: bool = True) -> list[Record]:
    """Read the card's table into :class:`Record` s.

    Args:
        card: the data card.
        root: data root (overrides ``card.root``).
        check_files: raise when a row's file is missing.

    Raises:
        ManifestError: missing column, missing file, non-numeric age, a path escaping the
            data root; always with the table path and 1-based row number (header = row 1).
    """
    root = Path(root or card.root or ".").expanduser().resolve()
    table = root / card.manifest
    header, rows = _read_table(table)
    for role, col in card.columns.items():
        if col not in header:
            raise ManifestError(f"{table}: column {col!r} (role {role!r} in card {card.name}) not found; columns are {header}")
    records = []
    for i, row in enumerate(rows, start=2):
        get = lambda role: (row.get(card.columns[role]) or "").strip() if role in card.columns else ""  # noqa: E731
        rel = get("path") or card.path_template.format(**row)
        path = (root / rel).resolve()
        if root not in path.parents and path != root:
            raise ManifestError(f"{table} row {i}: path {rel!r} escapes the data root {root}; paths must stay inside it")
        if check_files and not path.exists():
            raise ManifestError(f"{table} row {i}: file {path} does not exist (subject {get('subject')!r})")
        age_text = get("age")
        try:
            age = float(age_text) if age_text not in ("", "n/a", "NA", "nan") else math.nan
        except ValueError:
            raise ManifestError(f"{table} row {i}: age {age_text!r} in column {card.columns['age']!r} is not a number") from None
        if not get("subject"):
            raise ManifestError(f"{table} row {i}: empty subject id in column {card.columns['subject']!r}")
        records.append(Record(path=str(path), subject=get("subject"), session=get("session"), site=get("site"),
                              age=age, sex=get("sex"), label=get("label"), split=get("split")))
    if not records:
        raise ManifestError(f"{table}: no rows")
    return records


def write_manifest(records: list[Record], path: str | Path) -> Path:
    """Save records as TSV (used to record exactly what a run saw)."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(Record.__dataclass_fields__), delimiter="\t")
        w.writeheader()
        for r in records:
            w.writerow(r.to_dict())
    return path
