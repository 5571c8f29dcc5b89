"""Manifests: the table of records (one scan each) that everything downstream consumes.

:func:`scan_manifest` reads a card's source (table, file glob or MedMNIST ``.npz``) and
returns every record together with every problem found (missing file, path escaping the
data root, non-numeric age, unknown split value, …), each naming the table row or the file.
:func:`build_manifest` is the strict form used by training: it raises on the first problem.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
import string
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from medssl.data.card import DataCard

MISSING_AGE = ("", "n/a", "na", "nan", "none", "null")


class ManifestError(ValueError):
    """A problem in the metadata table; the message names the table, row and column."""


@dataclass
class Record:
    """One scan with its metadata. Missing values: age NaN, other fields "".

    ``split`` is the role of the scan in a run (train / val / test; "" = not assigned yet).
    ``index`` and ``npz_split`` locate one image inside a MedMNIST ``.npz`` (``path``);
    they are -1 and "" for one-file-per-scan data sets.
    """

    path: str
    subject: str
    session: str = ""
    site: str = ""
    age: float = math.nan  #: years
    sex: str = ""
    label: str = ""
    split: str = ""
    index: int = -1  #: row in the MedMNIST split ``npz_split`` (-1 = the whole file is the scan)
    npz_split: str = ""  #: "train" / "val" / "test" array of a MedMNIST .npz

    @property
    def key(self) -> str:
        """Identity of the scan's source (file, or file + array row)."""
        return self.path if self.index < 0 else f"{self.path}::{self.npz_split}[{self.index}]"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Problem:
    """Something wrong with one row or file. ``where`` names it (``table row 7`` or a path)."""

    where: str
    reason: str
    path: str = ""
    kind: str = "row"  #: "row" (metadata), "missing" (file absent), "file" (unreadable / wrong image)

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class ManifestScan:
    """Result of :func:`scan_manifest`: usable records and every problem found."""

    records: list[Record]
    problems: list[Problem] = field(default_factory=list)
    root: Path = Path(".")
    source: str = ""  #: the table, glob or .npz the records came from


def read_table(path: Path) -> tuple[list[str], list[dict]]:
    """Read a TSV (``.tsv``/``.tab``) or CSV table, optionally gzip-compressed (``.gz``)."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    delimiter = "\t" if name.endswith((".tsv", ".tab")) else ","
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"metadata table {path} does not exist; check data.root / the card's manifest") from None
    except (OSError, EOFError) as e:
        raise ManifestError(f"metadata table {path} cannot be read ({e}); is it a complete .gz file?") from None
    text = raw.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = list(reader)
    return [h.strip() for h in reader.fieldnames or []], [{(k or "").strip(): v for k, v in r.items()} for r in rows]


def parse_age(text: str) -> float:
    """Age in years from a table cell; empty / n/a → NaN. Raises ValueError if not a number."""
    text = (text or "").strip()
    return math.nan if text.lower() in MISSING_AGE else float(text)


def _inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` normalised lexically (symlinks are not followed), or None if it leaves root."""
    path = Path(os.path.normpath(root / rel))
    return path if path == root or root in path.parents else None


def _template_fields(template: str) -> set[str]:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def _record(card: DataCard, values: dict, path: Path, where: str, problems: list[Problem]) -> Record | None:
    """Build a record from role values; append problems (and return None) for bad metadata."""
    subject = (values.get("subject") or "").strip()
    if not subject:
        col = card.columns.get("subject", "path_regex group 'subject'")
        problems.append(Problem(where, f"empty subject id in {col!r}", str(path)))
        return None
    try:
        age = parse_age(values.get("age", ""))
    except ValueError:
        problems.append(Problem(where, f"age {values.get('age')!r} in column {card.columns.get('age')!r} is not a "
                                       "number (use years, or leave empty / n/a when unknown)", str(path)))
        return None
    raw_split = (values.get("split") or "").strip()
    split = card.split_role(raw_split)
    if split is None:
        known = sorted({v for vs in card.splits.values() for v in vs}) or ["train", "val", "test"]
        problems.append(Problem(where, f"split value {raw_split!r} is not one of {known}; map it in the card's "
                                       "`splits:` (e.g. splits: {test: [" + raw_split + "]})", str(path)))
        return None
    return Record(path=str(path), subject=subject, session=(values.get("session") or "").strip(),
                  site=(values.get("site") or "").strip(), age=age, sex=(values.get("sex") or "").strip(),
                  label=(values.get("label") or "").strip(), split=split)


def _role_values(card: DataCard, row: dict) -> dict:
    return {role: row.get(col, "") for role, col in card.columns.items()}


def _table(card: DataCard, root: Path) -> tuple[Path, list[str], list[dict]]:
    table = root / card.manifest
    header, rows = read_table(table)
    for role, col in card.columns.items():
        if col not in header:
            raise ManifestError(f"{table}: column {col!r} (role {role!r} in card {card.name}) not found; columns are {header}")
    return table, header, rows


def _scan_table(card: DataCard, root: Path, problems: list[Problem]) -> tuple[list[Record], str]:
    table, header, rows = _table(card, root)
    templates = [card.path_template] if isinstance(card.path_template, str) else list(card.path_template)
    templates = [t for t in templates if t]
    for t in templates:
        missing = _template_fields(t) - set(header)
        if missing:
            raise ManifestError(f"card {card.name}: path_template {t!r} uses {sorted(missing)} but {table} has columns {header}")
    records = []
    for i, row in enumerate(rows, start=2):
        where = f"{table} row {i}"
        values = _role_values(card, row)
        rels = [values["path"].strip()] if (values.get("path") or "").strip() else [t.format(**row) for t in templates]
        if not rels:
            problems.append(Problem(where, f"empty path in column {card.columns.get('path')!r}"))
            continue
        paths = [_inside(root, rel) for rel in rels]
        if any(p is None for p in paths):
            problems.append(Problem(where, f"path {rels[0]!r} escapes the data root {root}; paths must stay inside it"))
            continue
        path = next((p for p in paths if p.exists()), paths[0])
        rec = _record(card, values, path, where, problems)
        if rec is None:
            continue
        if not path.exists():
            problems.append(Problem(where, f"file {path} does not exist (subject {rec.subject!r})", str(path), "missing"))
        records.append(rec)
    if not rows:
        raise ManifestError(f"{table}: no rows")
    return records, str(table)


def _scan_files(card: DataCard, root: Path, problems: list[Problem]) -> tuple[list[Record], str]:
    by_subject: dict[str, dict] = {}
    if card.manifest:
        table, _, rows = _table(card, root)
        for i, row in enumerate(rows, start=2):
            subject = (row.get(card.columns["subject"]) or "").strip()
            if subject in by_subject:
                problems.append(Problem(f"{table} row {i}", f"subject {subject!r} is listed twice; with `files` the table "
                                                            "must have one row per subject"))
            by_subject[subject] = _role_values(card, row)
    pattern = re.compile(card.path_regex)
    records = []
    for f in sorted(root.glob(card.files)):
        rel = f.relative_to(root).as_posix()
        path = _inside(root, rel)
        m = pattern.search(rel)
        if path is None:
            problems.append(Problem(rel, f"escapes the data root {root}", str(f)))
            continue
        if m is None:
            problems.append(Problem(rel, f"does not match path_regex {card.path_regex!r}; fix the regex or narrow `files`",
                                    str(path)))
            continue
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        values = dict(groups)
        if card.manifest:
            row = by_subject.get(groups["subject"])
            if row is None:
                problems.append(Problem(rel, f"subject {groups['subject']!r} (from path_regex) has no row in {card.manifest}",
                                        str(path)))
                continue
            values = {**row, **groups}
        rec = _record(card, values, path, rel, problems)
        if rec is not None:
            records.append(rec)
    if not records and not problems:
        raise ManifestError(f"card {card.name}: no file under {root} matches files={card.files!r}; check data.root")
    return records, f"{root}/{card.files}"


def scan_manifest(card: DataCard, root: str | Path | None = None) -> ManifestScan:
    """Read the card's records and collect every row / file problem instead of stopping.

    Args:
        card: the data card.
        root: data root (overrides ``card.root``).

    Returns:
        :class:`ManifestScan`. Rows with a missing file are kept as records (and reported as
        a ``"missing"`` problem); rows with bad metadata are dropped (and reported).

    Raises:
        ManifestError: problems that concern the whole source: missing table or column,
            template fields absent from the table, no rows / no matching files.
    """
    root = card.resolve_root(root)
    problems: list[Problem] = []
    if card.format == "medmnist":
        from medssl.data.medmnist_records import medmnist_records

        records, source = medmnist_records(card, root, problems)
    elif card.files:
        records, source = _scan_files(card, root, problems)
    else:
        records, source = _scan_table(card, root, problems)
    return ManifestScan(records, problems, root, source)


def build_manifest(card: DataCard, root: str | Path | None = None, check_files: bool = True) -> list[Record]:
    """Read the card's records; the strict form of :func:`scan_manifest`.

    Args:
        card: the data card.
        root: data root (overrides ``card.root``).
        check_files: raise when a row's file is missing (``False``: keep the record, so a
            training run with ``on_bad_file=skip`` lists it with the other bad files).

    Raises:
        ManifestError: missing column, missing file, non-numeric age, a path escaping the
            data root, unknown split value; always with the table path and 1-based row number
            (header = row 1) or the file.
    """
    scan = scan_manifest(card, root)
    for p in scan.problems:
        if p.kind != "missing" or check_files:
            raise ManifestError(str(p))
    if not scan.records:
        raise ManifestError(f"{scan.source}: no usable records")
    return scan.records


def write_manifest(records: list[Record], path: str | Path) -> Path:
    """Save records as TSV (used to record exactly what a run saw, split column included)."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[f.name for f in fields(Record)], delimiter="\t", lineterminator="\n")
        w.writeheader()
        for r in records:
            w.writerow(r.to_dict())
    return path


def read_manifest(path: str | Path) -> list[Record]:
    """Read a TSV written by :func:`write_manifest` back into records."""
    _, rows = read_table(Path(path))
    out = []
    for row in rows:
        out.append(Record(path=row["path"], subject=row["subject"], session=row.get("session", ""), site=row.get("site", ""),
                          age=parse_age(row.get("age", "")), sex=row.get("sex", ""), label=row.get("label", ""),
                          split=row.get("split", ""), index=int(row.get("index") or -1), npz_split=row.get("npz_split", "")))
    return out
