"""Metadata tables of a card: read, concatenate, join, select rows, official split lists.

A card's ``manifest`` is one table or a list of tables with the same columns (e.g.
CheXpert's ``train.csv`` + ``valid.csv``). ``join`` adds the columns of other tables
matched on ``key`` column(s) (left join: unmatched rows get empty values), e.g. MIMIC-CXR's
split and metadata tables on ``dicom_id``; a joined column the table already has (MIMIC-CXR's
``subject_id``) keeps the table's value, and a row where the joined value differs is a problem (of the rows
``select`` keeps). ``select`` keeps rows whose column holds one of
the listed values (e.g. frontal views only). ``split_files`` reads official split lists
(one file name per line, as NIH ChestX-ray14's ``train_val_list.txt``, or one root-relative
path or subject id). Ids are compared by :func:`id_key` everywhere (joins, split lists).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import string
from dataclasses import dataclass
from pathlib import Path

from medssl.config import _did_you_mean

#: where a missing table or file points (every command that reads a card: --root DIR, or data.root in a run config)
ROOT_HINT = "check the data root (--root DIR, or data.root; a card without `root:` reads the current folder)"


#: spreadsheet files that are not text tables
WORKBOOKS = (".xls", ".xlsx", ".xlsm", ".xlsb", ".ods", ".numbers")


class ManifestError(ValueError):
    """A problem in the metadata table; the message names the table, row and column."""


@dataclass
class Row:
    where: str  #: "<table> row <n>" (1-based, header = row 1)
    values: dict  #: column → text


def _utf8(raw: bytes, what: str) -> str:
    """``raw`` as text: UTF-8 (a BOM is dropped), or UTF-16 when a byte-order mark says so (Excel's "Unicode
    Text"); else an error naming ``what`` and the first bad byte, or the NUL characters of UTF-16 without a BOM."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as e:
            raise ManifestError(f"{what} starts with a UTF-16 byte-order mark but is not UTF-16 text ({e.reason} at "
                                f"byte {e.start}); re-save it as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet)") from None
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ManifestError(f"{what} is not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r}); "
                                "re-save it as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet)") from None
    if "\x00" in text:
        raise ManifestError(f"{what} holds NUL characters (character {text.index(chr(0))}): UTF-16 text without a "
                            "byte-order mark, or not a text table; re-save it as UTF-8 (e.g. 'CSV UTF-8' in a "
                            "spreadsheet)")
    return text


def read_table(path: Path) -> tuple[list[str], list[dict]]:
    """Read a TSV (``.tsv``/``.tab``) or CSV table, optionally gzip-compressed (``.gz``).

    A ``.txt`` table whose header has more columns split at tabs than at commas is tab-separated (Excel's
    "Unicode Text"; a column name may hold a comma), any other ``.txt`` comma-separated.

    Returns ``(header, rows)``; rows as ``{column: text}``, blank lines left out, and so are
    columns without a name in the header (pandas' index, a spreadsheet's empty trailing
    columns: no card can name them; they still count in each row's number of fields).
    :func:`read_numbered_table` also gives each row's number.
    """
    header, numbered = read_numbered_table(path)
    return header, [row for _, row in numbered]


def _more_at_tabs(text: str) -> bool:
    """Whether the header (first record, quotes respected) of ``text`` has more columns split at tabs than at
    commas: a column name may hold a comma ('age, years'), which must not make a tab-separated .txt comma-separated."""
    def columns(delimiter: str) -> int:
        try:
            return len(next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), []))
        except csv.Error:  # e.g. a quote that this delimiter leaves open to the end of the file
            return 0
    return columns("\t") > columns(",")


def read_numbered_table(path: Path, bad_rows: list[tuple[str, str]] | None = None
                        ) -> tuple[list[str], list[tuple[str, dict]]]:
    """:func:`read_table` with each row's 1-based number in the file (header = row 1, blank lines counted),
    the number a spreadsheet shows: ``(header, [(number, {column: text})])``. The number is text: ``"7"``, or
    ``"7 (line 9)"`` below a quoted field with line breaks, where an editor's line numbers run ahead.

    Args:
        path: the table.
        bad_rows: when given, a row with more or fewer fields than the header is appended
            here as ``("<table> row <n>", reason)`` and left out instead of raising (so
            ``data check`` names every such row).

    Raises:
        ManifestError: missing or unreadable file, a spreadsheet workbook (.xlsx …), text that
            is neither UTF-8 nor UTF-16 with a byte-order mark, a header split by another delimiter (';' of a European Excel), a column name
            given twice, a row with more or fewer fields than the header (named by number;
            only without ``bad_rows``), a quote never closed that makes the rest of the file one field
            larger than csv's field size limit (named by the row it opens in).
    """
    gz = path.name.lower().endswith(".gz")  # suffixes in any case (Windows: P.TSV.GZ)
    name = path.name[:-3] if gz else path.name
    delimiter = "\t" if name.lower().endswith((".tsv", ".tab")) else ","
    if name.lower().endswith(WORKBOOKS):
        raise ManifestError(f"metadata table {path} is a spreadsheet workbook; medssl reads text tables: save the sheet as "
                            "'CSV UTF-8 (Comma delimited)' (or pandas.read_excel(...).to_csv(...)) and name that .csv in "
                            "the card")
    try:
        raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"metadata table {path} does not exist; {ROOT_HINT} and the card's manifest") from None
    except (OSError, EOFError) as e:
        raise ManifestError(f"metadata table {path} cannot be read ({e}); is it a complete .gz file?") from None
    text = _utf8(raw, f"metadata table {path}")
    if name.lower().endswith(".txt") and _more_at_tabs(text):
        delimiter = "\t"  # Excel's "Unicode Text" (.txt: UTF-16 with a BOM, tab-separated)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    lines, starts = [], [1]  # records, and the line of the file each starts on (the one after the last read)
    try:
        for cells in reader:
            lines.append(cells)
            starts.append(reader.line_num + 1)
    except csv.Error as e:  # a quote never closed: the rest of the file is one field, past csv's size limit
        raise ManifestError(f"metadata table {path} row {_row_label(len(lines) + 1, starts[len(lines)])}: {e}: a field "
                            "opened with a quote (\") that is never closed takes in the rest of the file; close the "
                            "quote or remove it") from None
    header = [h.strip() for h in (lines[0] if lines else [])]
    other = [d for d in ";\t,|" if d != delimiter and len(header) == 1 and d in header[0]]
    if other:
        raise ManifestError(f"metadata table {path}: the header is one column {header[0]!r} that holds {other[0]!r}: the "
                            f"table looks {other[0]!r}-separated, but a {Path(name).suffix or 'text'} table is read as "
                            f"{delimiter!r}-separated (.tsv / .tab: tabs, .txt: tabs if its header has more columns at "
                            "tabs than at commas, any other: commas); save it comma-separated as "
                            ".csv ('CSV UTF-8 (Comma delimited)'; a European Excel writes ';') or tab-separated as .tsv")
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise ManifestError(f"metadata table {path}: column(s) {twice} appear more than once in the header; rename them")
    rows = []
    for number, (cells, line) in enumerate(zip(lines[1:], starts[1:]), start=2):
        if not any(c.strip() for c in cells):
            continue  # blank line
        label = _row_label(number, line)
        if len(cells) != len(header):
            reason = f"{len(cells)} fields but the header has {len(header)}; a field holding the delimiter must be quoted"
            if bad_rows is None:
                raise ManifestError(f"metadata table {path} row {label}: {reason}")
            bad_rows.append((f"{path} row {label}", reason))
            continue
        rows.append((label, {h: c for h, c in zip(header, cells) if h}))
    return [h for h in header if h], rows


def _row_label(number: int, line: int) -> str:
    """``"7"``, or ``"7 (line 9)"`` when quoted line breaks above put the row on another line of the file."""
    return str(number) if line == number else f"{number} (line {line})"


def id_key(value: str) -> str:
    """Join key of an id: stripped, and numeric ids compared as numbers ("002" ↔ "2")."""
    value = (value or "").strip()
    return str(int(value)) if value.isascii() and value.isdigit() else value


def _key(row: dict, on: list[str]) -> tuple:
    return tuple(id_key(row.get(c, "")) for c in on)


def _join(rows: list[Row], header: list[str], root: Path, spec: dict, conflicts: list[tuple[Row, str]],
          bad_rows: list[tuple[str, str]] | None = None) -> list[str]:
    """Add the columns of the joined table ``spec`` to ``rows``; returns the new header. A row whose repeated
    column differs from the joined table's value is appended to ``conflicts`` (reported after ``select``)."""
    if not isinstance(spec, dict) or set(spec) - {"table", "key"} or not spec.get("table") or not spec.get("key"):
        raise ManifestError(f"join entry {spec!r} must be {{table: <file>, key: <column or [columns]>}}")
    on = [spec["key"]] if isinstance(spec["key"], str) else list(spec["key"])
    table = root / spec["table"]
    jheader, jrows = read_numbered_table(table, bad_rows)
    for col, hdr, name in [(c, h, n) for c in on for h, n in ((header, "manifest"), (jheader, str(table)))]:
        if col not in hdr:
            raise ManifestError(f"join on {col!r}: column not in {name} (columns: {hdr})")
    index: dict[tuple, dict] = {}
    first: dict[tuple, tuple[int, dict]] = {}  # key → (row number, key as written) of its first row
    for i, jr in jrows:
        k, written = _key(jr, on), {c: jr.get(c, "").strip() for c in on}
        if k in index:
            j, other = first[k]
            raise ManifestError(f"{table} row {i}: key {written} appears twice (row {j}"
                                + (")" if other == written else f" as {other}; numeric ids match without leading zeros)")
                                + "; a joined table needs one row per key")
        index[k], first[k] = jr, (i, written)
    added = [c for c in jheader if c not in header]
    repeated = [c for c in jheader if c in header and c not in on]  # kept from the manifest (or an earlier join)
    for row in rows:
        k = _key(row.values, on)
        match = index.get(k, {})
        for c in added:
            row.values[c] = match.get(c, "")
        for c in repeated:
            theirs, have = match.get(c, "").strip(), row.values.get(c, "")
            if theirs and id_key(theirs) != id_key(have):  # a value of the joined table that would be lost
                conflicts.append((row, f"column {c!r} is {have.strip()!r} here but {theirs!r} in joined table {table} "
                                       f"row {first[k][0]}; the value here is used: make the tables agree (or rename "
                                       "the column in one)"))
    return header + added


def _inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` normalised lexically (symlinks are not followed), or None if it leaves root."""
    path = Path(os.path.normpath(root / rel))
    return path if path == root or root in path.parents else None


def _template_fields(template: str) -> set[str]:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def spaces_hint(root: Path, templates: list[str], row: Row) -> str:
    """For a missing file: the template's cells of ``row`` with spaces at their ends (kept in the file name),
    and the file named without them where it exists; "" when no such cell."""
    cols = sorted({f for t in templates for f in _template_fields(t) if row.values[f] != row.values[f].strip()})
    if not cols:
        return ""
    stripped = {**row.values, **{c: row.values[c].strip() for c in cols}}
    found = [p for p in (_inside(root, t.format(**stripped)) for t in templates) if p is not None and p.exists()]
    cells = ", ".join(f"column {c!r} holds {row.values[c]!r}" for c in cols)
    return (f"; {cells} with spaces at its ends, kept in the file name"
            + (f"; {found[0]} exists: strip the spaces in the table" if found else ""))


def load_rows(manifest: str | list, root: Path, join: list | None = None, select: dict | None = None,
              bad_rows: list[tuple[str, str]] | None = None) -> tuple[list[Row], list[str], str]:
    """Rows of the card's table(s) after ``join`` and ``select``.

    ``bad_rows``: collects the rows with a wrong field count of the manifest and of every
    joined table (see :func:`read_numbered_table`) instead of raising at the first; such a
    joined row matches nothing. A joined column named like a column already in the table is not
    added; the rows (of those ``select`` keeps) where the joined table has another (non-empty) value are
    collected too, naming both rows and values (ids compared as in joins: "007" = "7"), or raised without
    ``bad_rows``.

    Returns:
        ``(rows, header, source)``; ``source`` names the table(s).

    Raises:
        ManifestError: a missing or unreadable table, tables with different columns, a
            join / select column that does not exist, duplicate join keys.
    """
    tables = [manifest] if isinstance(manifest, str) else list(manifest)
    rows: list[Row] = []
    header: list[str] = []
    for t in tables:
        path = root / t
        n_bad = len(bad_rows or [])
        h, rs = read_numbered_table(path, bad_rows)
        if header and h != header:
            raise ManifestError(f"{path}: columns {h} differ from those of {tables[0]} ({header}); "
                                "the tables of one manifest must have the same columns")
        header = header or h
        rows += [Row(f"{path} row {i}", r) for i, r in rs]
        if not rs and len(bad_rows or []) == n_bad:
            raise ManifestError(f"{path}: no rows")
    conflicts: list[tuple[Row, str]] = []
    for spec in join or []:
        header = _join(rows, header, root, spec, conflicts, bad_rows)
    for col, values in (select or {}).items():
        if col not in header:
            raise ManifestError(f"the card's select.{col} names a column that is not in {tables[0]}."
                                f"{_did_you_mean(str(col), header)} Columns are {header}")
        keep = {str(v) for v in (values if isinstance(values, list) else [values])}
        rows = [r for r in rows if r.values.get(col, "").strip() in keep]
    kept = {id(r) for r in rows}
    for row, reason in conflicts:  # only rows select keeps: a dropped row's values are no part of the data
        if id(row) in kept:
            if bad_rows is None:
                raise ManifestError(f"{row.where}: {reason}")
            bad_rows.append((row.where, reason))
    return rows, header, ", ".join(str(root / t) for t in tables)


def load_split_files(split_files: dict, root: Path) -> dict[str, str]:
    """``{entry: official split value}`` from the card's split lists; an entry (one line) is a file
    name, a root-relative path or a subject id.

    Raises:
        ManifestError: a list file is missing or not UTF-8 text (a BOM is fine; UTF-16 needs one), or an entry is
            listed under two splits (also when written differently as an id, as :func:`id_key`
            compares them: "002" and "2").
    """
    out: dict[str, str] = {}
    ids: dict[str, str] = {}  # id_key → the first entry with it
    for value, name in (split_files or {}).items():
        path = root / name
        try:
            lines = _utf8(path.read_bytes(), f"split list {path} (split {value!r})").splitlines()
        except FileNotFoundError:
            raise ManifestError(f"split list {path} (split {value!r}) does not exist; {ROOT_HINT}") from None
        for line in lines:
            entry = line.strip()
            if not entry:
                continue
            first = ids.setdefault(id_key(entry), entry)
            if out.get(first, value) != value:
                if first == entry:
                    raise ManifestError(f"{entry!r} is listed in two split files ({out[entry]!r} and {value!r})")
                raise ManifestError(f"{entry!r} ({name}) and {first!r} ({split_files[out[first]]}) are one id "
                                    f"(numeric ids match without leading zeros) listed in two split files "
                                    f"({value!r} and {out[first]!r}); keep it in one list")
            out[entry] = value
    return out


class SplitLists:
    """The card's official split lists (``split_files``), looked up scan by scan.

    An entry names a scan by root-relative path or file name, or else by its subject id,
    compared as the joins compare keys (:func:`id_key`: "2" lists subject "002"; two subjects
    of one id written two ways are a problem of the manifest, ``_one_id_two_ways``).
    """

    def __init__(self, split_files: dict, root: Path) -> None:
        self.files, self.root = split_files or {}, root
        self.split_of = load_split_files(self.files, root)
        self.entry_of_id: dict[str, str] = {}  # id_key → the entry with that id
        for entry in self.split_of:
            self.entry_of_id.setdefault(id_key(entry), entry)
        self.asked = self.found = 0  # scans looked up; found in a list

    def __bool__(self) -> bool:
        return bool(self.split_of)

    def lookup(self, rel: str, subject: str) -> str:
        """The official split value of the scan at root-relative ``rel`` of ``subject``, or ""."""
        self.asked += 1
        split = self.split_of.get(rel, self.split_of.get(rel.rsplit("/", 1)[-1]))
        entry = self.entry_of_id.get(id_key(subject)) if split is None and subject.strip() else None
        if entry is not None:
            split = self.split_of[entry]
        self.found += split is not None
        return split or ""

    def unused(self) -> list[tuple[str, str]]:
        """``[(the lists, reason)]`` when scans were looked up and none was found in a list."""
        if not self.asked or self.found:
            return []
        lists = ", ".join(str(self.root / f) for f in self.files.values())
        return [(lists, f"no entry of the split lists names any of the {self.asked} scan(s) (by root-relative path, "
                        "file name or subject id), so none would get its official split; compare the lists' lines "
                        "with the table's paths and subject ids")]
