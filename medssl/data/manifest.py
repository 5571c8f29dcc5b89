"""Manifests: the table of records (one scan each) that everything downstream consumes.

:func:`scan_manifest` reads a card's source (table, file glob or MedMNIST ``.npz``) and
returns every record together with every problem found (missing file, path escaping the
data root, non-numeric age, unknown split value, …), each naming the table row or the file.
:func:`build_manifest` is the strict form used by training: it raises on the first problem.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from medssl.atomic import atomic_write
from medssl.config import _did_you_mean
from medssl.data.card import DataCard
from medssl.data.tables import (ROOT_HINT, ManifestError, Row, SplitLists, _inside, _template_fields, id_key, load_rows,
                                 read_table, spaces_hint)

MISSING_AGE = ("", "n/a", "na", "nan", "none", "null")
#: site / sex / label cells that mean "unknown" (BIDS writes n/a; R's write.csv NA; pandas' str(NaN) is nan) → ""
#: (code -1). Not "none" / "null", which MISSING_AGE takes: "none" can be a label (no finding).
MISSING_CATEGORY = ("", "n/a", "na", "nan")


def natural_order(text: str) -> tuple:
    """Sort key with the numbers in ``text`` by value ("2" before "10", "ses-2" before "ses-10"), then the
    text itself, so values written differently ("1", "01") still sort the same whatever order they are met in."""
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in parts) + ((2, 0, text),)


@dataclass
class Record:
    """One scan with its metadata. Missing values: age NaN, other fields "" (a table's n/a too).

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


#: oldest plausible age (years); anything above is a unit or typing error
MAX_AGE = 130.0
_DECIMAL = re.compile(r"\d+(\.\d*)?|\.\d+")


def parse_age(text: str) -> float:
    """Age in years from a table cell; empty / n/a → NaN.

    Raises:
        ValueError: (with the reason) not a plain decimal number such as ``45`` or ``45.5``
            (``45Y``, ``4_5``, ``-3``, ``inf``), or above :data:`MAX_AGE`.
    """
    text = (text or "").strip()
    if text.lower() in MISSING_AGE:
        return math.nan
    if not _DECIMAL.fullmatch(text):
        raise ValueError("is not a plain number of years (digits and one decimal point)")
    age = float(text)
    if age > MAX_AGE:
        raise ValueError(f"is above {MAX_AGE:g} years (months or days instead of years?)")
    return age


def _record(card: DataCard, values: dict, path: Path, where: str, problems: list[Problem]) -> Record | None:
    """Build a record from role values; append problems (and return None) for bad metadata."""
    subject = (values.get("subject") or "").strip()
    if not subject:
        col = card.columns.get("subject", "path_regex group 'subject'")
        problems.append(Problem(where, f"empty subject id in {col!r}", str(path)))
        return None
    try:
        age = parse_age(values.get("age", ""))
    except ValueError as e:
        problems.append(Problem(where, f"age {values.get('age')!r} in column {card.columns.get('age')!r} {e} "
                                       "(use years, or leave empty / n/a when unknown)", str(path)))
        return None
    raw_split = (values.get("split") or "").strip()
    split = card.split_role(raw_split)
    if split is None:
        known = sorted({v for vs in card.splits.values() for v in vs}) or ["train", "val", "test"]
        problems.append(Problem(where, f"split value {raw_split!r} is not one of {known}; map it in the card's "
                                       "`splits:` (e.g. splits: {test: [" + raw_split + "]})", str(path)))
        return None
    return Record(path=str(path), subject=subject, session=(values.get("session") or "").strip(),
                  site=_category(values, "site"), age=age, sex=_category(values, "sex"),
                  label=_category(values, "label"), split=split)


def _category(values: dict, role: str) -> str:
    """A categorical cell, stripped; :data:`MISSING_CATEGORY` (any case) → "" (missing, code -1)."""
    text = (values.get(role) or "").strip()
    return "" if text.lower() in MISSING_CATEGORY else text


def _role_values(card: DataCard, row: dict) -> dict:
    return {role: row.get(col, "") for role, col in card.columns.items()}


class _Roles:
    """Role values of one scan: columns, then path_regex groups, then official split lists."""

    def __init__(self, card: DataCard, root: Path) -> None:
        self.card, self.root = card, root
        self.regex = re.compile(card.path_regex) if card.path_regex else None
        self.split_lists = SplitLists(card.split_files, root)

    def __call__(self, values: dict, path: Path) -> dict | str:
        """Completed role values, or the reason why the path does not match path_regex."""
        rel = path.relative_to(self.root).as_posix() if self.root in path.parents else str(path)
        out = dict(values)
        if self.regex is not None:
            m = self.regex.search(rel)
            if m is None:
                return f"{rel} does not match path_regex {self.card.path_regex!r}; fix the regex or the selection"
            for role, v in m.groupdict().items():
                if v is not None and not (out.get(role) or "").strip():
                    out[role] = v
        if self.split_lists and not (out.get("split") or "").strip():
            out["split"] = self.split_lists.lookup(rel, (out.get("subject") or "").strip())
        return out

    def unused(self) -> list[Problem]:
        return [Problem(where, reason) for where, reason in self.split_lists.unused()]


def _rows(card: DataCard, root: Path, problems: list[Problem]) -> tuple[list[Row], list[str], str]:
    """The card's table rows; a row with a wrong field count is a problem of its own (the others are read)."""
    bad: list[tuple[str, str]] = []
    rows, header, source = load_rows(card.manifest, root, card.join, card.select, bad)
    problems += [Problem(where, reason) for where, reason in bad]
    for role, col in card.columns.items():
        if col not in header:
            raise ManifestError(f"{source}: column {col!r} (columns.{role} of card {card.source_file or card.name}) is not "
                                f"in the table.{_did_you_mean(str(col), header)} Columns are {header}; fix the card or "
                                "the table")
    return rows, header, source


def _format_paths(card: DataCard, templates: list[str], row: Row) -> list[str]:
    """The row's path from each ``path_template``; a template that cannot format text cells is refused."""
    try:
        return [t.format(**row.values) for t in templates]
    except (ValueError, IndexError, AttributeError, TypeError) as e:  # {id:03d}, {}, {id!x}, {id.x}, {id[x]}
        raise ManifestError(f"card {card.name}: path_template {templates} cannot be filled from {row.where} ({e}); "
                            "table cells are text, so zero-pad with {column:0>3} rather than {column:03d}, and "
                            "name every field after a column") from None


def _scan_table(card: DataCard, root: Path, problems: list[Problem]) -> tuple[list[Record], str]:
    rows, header, source = _rows(card, root, problems)
    templates = [card.path_template] if isinstance(card.path_template, str) else list(card.path_template)
    templates = [t for t in templates if t]
    for t in templates:
        missing = _template_fields(t) - set(header)
        if missing:
            raise ManifestError(f"card {card.source_file or card.name}: path_template {t!r} uses {sorted(missing)} but "
                                f"{source} has no such column.{_did_you_mean(sorted(missing)[0], header)} Columns are "
                                f"{header}")
    roles = _Roles(card, root)
    records = []
    for row in rows:
        values = _role_values(card, row.values)
        from_column = bool((values.get("path") or "").strip())
        rels = [values["path"].strip()] if from_column else _format_paths(card, templates, row)
        if not rels:
            problems.append(Problem(row.where, f"empty path in column {card.columns.get('path')!r}"))
            continue
        paths = [_inside(root, rel) for rel in rels]
        if any(p is None for p in paths):
            problems.append(Problem(row.where, f"path {rels[0]!r} escapes the data root {root}; paths must stay inside it"))
            continue
        path = next((p for p in paths if p.exists()), paths[0])
        values = roles(values, path)
        if isinstance(values, str):
            problems.append(Problem(row.where, values, str(path)))
            continue
        rec = _record(card, values, path, row.where, problems)
        if rec is None:
            continue
        if not path.exists():
            hint = "" if from_column else spaces_hint(root, templates, row)
            problems.append(Problem(row.where, f"file {path} does not exist (subject {rec.subject!r}){hint}", str(path),
                                    "missing"))
        records.append(rec)
    if not rows and not problems:  # (rows with a wrong field count are problems already)
        raise ManifestError(f"{source}: no rows left after select {card.select}")
    problems += roles.unused()
    return records, source


def _scan_files(card: DataCard, root: Path, problems: list[Problem]) -> tuple[list[Record], str]:
    by_subject: dict[str, dict] = {}
    if card.manifest:
        rows, _, source = _rows(card, root, problems)
        first_row: dict[str, str] = {}
        for row in rows:
            key, values = id_key(row.values.get(card.columns["subject"], "")), _role_values(card, row.values)
            if key in by_subject:  # a repeated row that agrees on every column the card uses is the same subject
                diffs = [f"{role}: {by_subject[key][role]!r} in row {first_row[key].rsplit(' row ', 1)[-1]}, "
                         f"{v!r} in row {row.where.rsplit(' row ', 1)[-1]}" for role, v in values.items()
                         if v.strip() != by_subject[key][role].strip()]
                if diffs:
                    problems.append(Problem(row.where, f"subject {key!r} has rows that disagree ({'; '.join(diffs)}); "
                                                       f"keep one row per subject in {card.manifest} (or empty those "
                                                       "cells in each of its rows)"))
                    by_subject[key] = values
                continue
            by_subject[key], first_row[key] = values, row.where
    roles = _Roles(card, root)
    records = []
    for f in sorted(root.glob(card.files)):
        rel = f.relative_to(root).as_posix()
        path = _inside(root, rel)
        if path is None:
            problems.append(Problem(rel, f"escapes the data root {root}", str(f)))
            continue
        values = roles({}, path)
        if isinstance(values, str):
            problems.append(Problem(rel, values, str(path)))
            continue
        if card.manifest:
            row = by_subject.get(id_key(values["subject"]))
            if row is None:
                problems.append(Problem(rel, f"subject {values['subject']!r} (from path_regex) has no row in "
                                             f"{card.manifest}; add a row for it (empty cells are allowed) or move "
                                             "the file out of the data root", str(path)))
                continue
            values = {**row, **{k: v for k, v in values.items() if (v or "").strip()}}
        rec = _record(card, values, path, rel, problems)
        if rec is not None:
            records.append(rec)
    if not records and not problems:
        raise ManifestError(f"card {card.name}: no file under {root} matches files={card.files!r}; {ROOT_HINT}")
    problems += roles.unused()
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
    if root.exists() and not root.is_dir():
        raise ManifestError(f"data root {root} is a file, not a folder; pass the folder that holds card "
                            f"{card.name}'s data (--root / data.root)")
    problems: list[Problem] = []
    if card.format == "medmnist":
        from medssl.data.medmnist_records import medmnist_records

        records, source = medmnist_records(card, root, problems)
    elif card.files:
        records, source = _scan_files(card, root, problems)
    else:
        records, source = _scan_table(card, root, problems)
    return ManifestScan(records, problems + _listed_twice(records) + _one_id_two_ways(records), root, source)


def _listed_twice(records: list[Record]) -> list[Problem]:
    """One problem per scan that more than one row names (it could land on both sides of a split)."""
    rows: dict[str, list[Record]] = {}
    for r in records:
        rows.setdefault(r.key, []).append(r)
    return [Problem(key, f"the same scan is listed {len(rs)} times (subjects {sorted({r.subject for r in rs})}); each scan "
                         "must appear once, or a subject-level split can put it in training and test", key, "row")
            for key, rs in rows.items() if len(rs) > 1]


def _one_id_two_ways(records: list[Record]) -> list[Problem]:
    """One problem per subject id written two ways ("002", "2"): joins and split lists take them for one id
    (:func:`~medssl.data.tables.id_key`), a subject-level split would take them for two subjects."""
    first: dict[str, Record] = {}
    out = []
    for r in records:
        f = first.setdefault(id_key(r.subject), r)
        if f.subject != r.subject:
            out.append(Problem(r.key, f"subject {r.subject!r} and subject {f.subject!r} ({f.key}) are one id (numeric ids "
                                      "match without leading zeros, as in join and split lists) written two ways; a split "
                                      "could put them on both sides: write the id the same way in every row", r.key, "row"))
    return out


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
            raise ManifestError(str(p) + ("; or set data.on_bad_file=skip to leave missing files out and list them"
                                          if p.kind == "missing" else ""))
    if not scan.records:
        raise ManifestError(f"{scan.source}: no usable records")
    return scan.records


def write_manifest(records: list[Record], path: str | Path) -> Path:
    """Save records as TSV (used to record exactly what a run saw, split column included).

    Written to a temporary file of this process, then renamed over ``path``: a reader (another DDP rank
    reading the run's split back) sees the previous or the new manifest whole, and a failed write
    leaves the previous one as it was.
    """
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=[f.name for f in fields(Record)], delimiter="\t", lineterminator="\n")
            w.writeheader()
            w.writerows(r.to_dict() for r in records)

    return atomic_write(path, write)


def read_manifest(path: str | Path) -> list[Record]:
    """Read a TSV written by :func:`write_manifest` back into records."""
    _, rows = read_table(Path(path))
    out = []
    for row in rows:
        out.append(Record(path=row["path"], subject=row["subject"], session=row.get("session", ""), site=row.get("site", ""),
                          age=parse_age(row.get("age", "")), sex=row.get("sex", ""), label=row.get("label", ""),
                          split=row.get("split", ""), index=int(row.get("index") or -1), npz_split=row.get("npz_split", "")))
    return out
