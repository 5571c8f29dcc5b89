"""Data cards: one YAML file per data set describing files, metadata roles and preprocessing.

The schema is documented in ``data_cards/README.md``. A card is looked up by name in
``./data_cards`` and in the ``data_cards`` folder shipped next to the package, or given as a
path. Every key is checked when the card is loaded, so a typo fails early with the card's
path, the key and the valid choices.

A card locates its scans in one of three ways:

* ``manifest`` (a TSV/CSV table, optionally ``.gz``) with ``path_template`` or a
  ``columns.path`` column: one scan per row;
* ``files`` (a glob under the data root) with ``path_regex`` giving the subject (and
  optionally session, site, label) from each path; an optional ``manifest`` then adds
  per-subject metadata (the BIDS layout: ``participants.tsv`` + ``sub-*/ses-*/anat/*``);
* ``npz`` (``format: medmnist``): one MedMNIST file, one record per image of each split.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field, fields
from pathlib import Path

from medssl.config import NORMALISATIONS, ConfigError, _did_you_mean, load_yaml_file

ROLES = ("subject", "session", "site", "age", "sex", "label", "path", "split")
FORMATS = ("auto", "nifti", "dicom", "dicom_series", "itk", "png", "medmnist", "npy")
SPLIT_ROLES = ("train", "val", "test")
PREPROCESSING_KEYS = ("shape", "spacing", "normalise", "channels")
GEOMETRY_KEYS = ("reference", "spacing")
REQUIRED = ("name", "modality", "dimensionality")


@dataclass
class DataCard:
    """A parsed data card (see data_cards/README.md for every field)."""

    name: str
    modality: str
    dimensionality: int
    manifest: str | list = ""  #: metadata table(s) relative to the data root (.tsv/.csv, optionally .gz)
    columns: dict = field(default_factory=dict)  #: role → column name
    join: list = field(default_factory=list)  #: [{table: file, key: column(s)}] tables whose columns are added
    select: dict = field(default_factory=dict)  #: {column: [values]} keep only these rows
    path_template: str | list = ""  #: format string(s) over a row's columns; the first that exists is used
    files: str = ""  #: glob under the root, e.g. "sub-*/**/anat/*_T1w.nii.gz" (instead of one row per scan)
    path_regex: str = ""  #: named groups (subject, session, site, label, split) searched in each scan's relative path
    npz: str = ""  #: MedMNIST .npz relative to the root (format: medmnist)
    root: str = ""  #: default data root; relative roots are resolved against the card's folder
    description: str = ""
    format: str = "auto"  #: reader (see FORMATS); auto = by file extension
    reader_options: dict = field(default_factory=dict)  #: keyword options for the reader, e.g. {voi: auto}
    geometry: dict = field(default_factory=dict)  #: for format npy: {reference: image.nii.gz} or {spacing: [..]}
    preprocessing: dict = field(default_factory=dict)  #: recommended shape / spacing (mm) / normalise
    splits: dict = field(default_factory=dict)  #: official split value(s) per role: {train: [..], val: [..], test: [..]}
    split_files: dict = field(default_factory=dict)  #: {official split value: list file}, one file name per line
    licence: str = ""
    citation: str = ""
    obtain: str = ""
    phi: str = ""
    source_file: str = ""

    def resolve_root(self, root: str | Path | None = None) -> Path:
        """The data root: ``root`` if given, else the card's ``root`` (relative to the card file)."""
        if root:
            return Path(os.path.expandvars(str(root))).expanduser().resolve()
        if not self.root:
            return Path.cwd().resolve()
        p = Path(os.path.expandvars(self.root)).expanduser()
        if not p.is_absolute() and self.source_file:
            p = Path(self.source_file).parent / p
        return p.resolve()

    def split_role(self, value: str) -> str | None:
        """Map an official split value (as in the table or the .npz) to train / val / test.

        Without a ``splits`` mapping the values must already be train / val / test. Returns
        ``""`` for an empty value and ``None`` for a value the card does not know.
        """
        if not value:
            return ""
        if not self.splits:
            return value if value in SPLIT_ROLES else None
        for role, values in self.splits.items():
            if value in values:
                return role
        return None


def card_search_paths() -> list[Path]:
    here = Path(__file__).resolve().parents[2] / "data_cards"
    return [Path.cwd() / "data_cards", here]


def list_cards() -> list[str]:
    names = set()
    for d in card_search_paths():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def _locate(name_or_path: str | Path) -> Path:
    p = Path(os.path.expandvars(str(name_or_path))).expanduser()  # as data.root: ~/cards/x.yaml, $CARDS/x.yaml
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(f"data card file {p} does not exist")
        return p
    for d in card_search_paths():
        if (d / f"{name_or_path}.yaml").is_file():
            return d / f"{name_or_path}.yaml"
    raise ConfigError(f"unknown data card {str(name_or_path)!r}.{_did_you_mean(str(name_or_path), list_cards())} "
                      f"Valid cards: {', '.join(list_cards())}; or pass a path to a .yaml card")


def _check_keys(p: Path, where: str, given, valid) -> None:
    for key in given:
        if key not in valid:
            raise ConfigError(f"{p}: unknown key {where}{key!r}.{_did_you_mean(str(key), valid)} "
                              f"Valid keys: {', '.join(valid)}")


def _validate(p: Path, raw: dict) -> None:
    valid = [f.name for f in fields(DataCard) if f.name != "source_file"]
    _check_keys(p, "", raw, valid)
    for key in REQUIRED:
        if key not in raw:
            raise ConfigError(f"{p}: required card key {key!r} is missing (see data_cards/README.md)")
    if raw["dimensionality"] not in (2, 3):
        raise ConfigError(f"{p}: dimensionality must be 2 or 3, got {raw['dimensionality']!r}")
    fmt = raw.get("format", "auto")
    if fmt not in FORMATS:
        raise ConfigError(f"{p}: format {fmt!r} is not known.{_did_you_mean(str(fmt), FORMATS)} Valid: {', '.join(FORMATS)}")
    for key in ("columns", "reader_options", "geometry", "preprocessing", "splits", "select", "split_files"):
        if not isinstance(raw.get(key, {}), dict):
            raise ConfigError(f"{p}: {key} must be a mapping, got {raw[key]!r}")
    manifest = raw.get("manifest", "")
    if not (isinstance(manifest, str) or isinstance(manifest, list) and all(isinstance(m, str) for m in manifest)):
        raise ConfigError(f"{p}: manifest must be a table file or a list of table files, got {manifest!r}")
    join = raw.get("join", [])
    if not isinstance(join, list) or not all(isinstance(j, dict) and set(j) == {"table", "key"} for j in join):
        raise ConfigError(f"{p}: join must be a list of {{table: <file>, key: <column or [columns]>}}, got {join!r}")
    if (join or raw.get("select")) and not manifest:
        raise ConfigError(f"{p}: join / select apply to the manifest table; give `manifest` too")
    if raw.get("path_regex"):
        try:
            groups = set(re.compile(raw["path_regex"]).groupindex)
        except re.error as e:
            raise ConfigError(f"{p}: path_regex is not a valid regular expression: {e}") from None
        if groups - set(ROLES):
            raise ConfigError(f"{p}: path_regex groups {sorted(groups - set(ROLES))} are not roles; valid: {', '.join(ROLES)}")
    columns = raw.get("columns", {})
    for role in columns:
        if role not in ROLES:
            raise ConfigError(f"{p}: columns.{role} is not a known role.{_did_you_mean(role, ROLES)} Valid roles: {', '.join(ROLES)}")
    for key, what in (("columns", "a column name of the table"), ("split_files", "a list file, one name per line")):
        for k, v in raw.get(key, {}).items():
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"{p}: {key}.{k} must be {what} (one text value), got {v!r}")
    _check_keys(p, "preprocessing.", raw.get("preprocessing", {}), PREPROCESSING_KEYS)
    _check_keys(p, "geometry.", raw.get("geometry", {}), GEOMETRY_KEYS)
    _check_keys(p, "splits.", raw.get("splits", {}), SPLIT_ROLES)
    roles_of: dict[str, list[str]] = {}
    for role, values in raw.get("splits", {}).items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{p}: splits.{role} must be a list of split values, e.g. [train], got {values!r}")
        for v in dict.fromkeys(values):  # a value repeated under one role is still one role
            roles_of.setdefault(v, []).append(role)
    twice = {v: r for v, r in roles_of.items() if len(r) > 1}
    if twice:
        v, r = next(iter(twice.items()))
        raise ConfigError(f"{p}: split value {v!r} is listed under splits.{' and splits.'.join(r)}; give each "
                          "value one role (its scans would silently take the first)")
    _validate_strings(p, raw)
    _validate_preprocessing(p, raw.get("preprocessing", {}), raw["dimensionality"])
    _validate_reader_options(p, fmt, raw.get("reader_options", {}))
    sources = [k for k in ("files", "npz") if raw.get(k)]
    if fmt == "medmnist" or raw.get("npz"):
        if fmt != "medmnist" or not raw.get("npz"):
            raise ConfigError(f"{p}: a MedMNIST card needs both `format: medmnist` and `npz: <file>.npz`")
        if raw.get("files") or raw.get("manifest"):
            raise ConfigError(f"{p}: a MedMNIST card takes its records from `npz`; remove `files` / `manifest`")
        return
    if fmt == "npy" and not raw.get("geometry"):
        raise ConfigError(f"{p}: format npy needs geometry: {{reference: <a NIfTI on the same grid>}} or {{spacing: [..]}}")
    if raw.get("files"):
        if not raw.get("path_regex") or "(?P<subject>" not in raw["path_regex"]:
            raise ConfigError(f"{p}: `files` needs `path_regex` with a (?P<subject>...) group that names each "
                              "file's subject, e.g. '(?P<subject>sub-[^/_]+)'")
        if raw.get("manifest") and "subject" not in columns:
            raise ConfigError(f"{p}: with `files`, the manifest is joined on subject: set columns.subject")
        return
    if not sources and not raw.get("manifest"):
        raise ConfigError(f"{p}: give `manifest` (a table), `files` (a glob + path_regex) or `npz` (MedMNIST) "
                          "to locate the scans (see data_cards/README.md)")
    if "subject" not in columns and "(?P<subject>" not in raw.get("path_regex", ""):
        raise ConfigError(f"{p}: columns.subject (or a (?P<subject>...) group in path_regex) is required "
                          "(subject-level splits need it)")
    if not raw.get("path_template") and "path" not in columns:
        raise ConfigError(f"{p}: give either path_template or a columns.path column to locate each scan")


def _validate_strings(p: Path, raw: dict) -> None:
    """Text keys are text (``path_template`` may be a list of templates); ``files`` is relative to the root."""
    for key in ("name", "modality", "files", "path_regex", "npz", "root", "description", "licence", "citation",
                "obtain", "phi"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{p}: {key} must be text, got {raw[key]!r}")
    template = raw.get("path_template", "")
    if not (isinstance(template, str) or isinstance(template, list) and all(isinstance(t, str) for t in template)):
        raise ConfigError(f"{p}: path_template must be a format string or a list of them, e.g. "
                          f"'{{subject}}/t1.nii.gz', got {template!r}")
    for t in [template] if isinstance(template, str) else template:
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(t) if f is not None]
        except ValueError as e:  # an unmatched brace
            raise ConfigError(f"{p}: path_template {t!r} is not a valid format string ({e})") from None
        bad = [f for f in names if not f or f.isdigit() or "." in f or "[" in f]
        if bad:  # {}, {0}, {id.zfill}, {id[0]}: a cell is text, so only {column} and {column:spec} make a path
            raise ConfigError(f"{p}: path_template {t!r} field {{{bad[0]}}} is not a column name; write "
                              "{column} or {column:0>3} (zero-padded)")
    if Path(raw.get("files", "")).is_absolute():
        raise ConfigError(f"{p}: files {raw['files']!r} must be a glob relative to the data root; put the folder "
                          "in `root` (or pass --root) and the pattern in `files`")


def _validate_preprocessing(p: Path, pre: dict, dims: int) -> None:
    """shape: ``dims`` positive ints; spacing: ``dims`` positive mm; normalise: a known name; channels ≥ 1."""
    def numbers(key, kind, example):
        value = pre.get(key)
        if value is None:
            return
        ok = isinstance(value, list) and len(value) == dims and all(
            isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in value)
        if not ok:
            raise ConfigError(f"{p}: preprocessing.{key} must be a list of {dims} positive "
                              f"{'integers' if kind is int else 'numbers'} (dimensionality {dims}), e.g. "
                              f"{example[:dims]}, got {value!r}")

    numbers("shape", int, [96, 96, 96])
    numbers("spacing", (int, float), [1.5, 1.5, 1.5])
    if "normalise" in pre and pre["normalise"] not in NORMALISATIONS:
        raise ConfigError(f"{p}: preprocessing.normalise {pre['normalise']!r} is not known."
                          f"{_did_you_mean(str(pre['normalise']), NORMALISATIONS)} Valid: {', '.join(NORMALISATIONS)}")
    channels = pre.get("channels", 1)
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ConfigError(f"{p}: preprocessing.channels must be a positive integer (1 for grey-scale, 3 for RGB), "
                          f"got {channels!r}")


def _validate_reader_options(p: Path, fmt: str, options: dict) -> None:
    """Every option is a parameter of the reader the format forces (of at least one reader for ``auto``)."""
    if not options:
        return
    from medssl.io.read import FORMAT_READERS, reader_options

    if fmt not in FORMAT_READERS and fmt != "auto":
        raise ConfigError(f"{p}: reader_options do not apply to format {fmt!r}; remove them")
    readers = [FORMAT_READERS[fmt]] if fmt in FORMAT_READERS else list(FORMAT_READERS.values())
    valid = sorted({name for r in readers for name in reader_options(r)})
    for key in options:
        if key not in valid:
            raise ConfigError(f"{p}: unknown key reader_options.{key!r} for format {fmt!r}."
                              f"{_did_you_mean(str(key), valid)} Valid: {', '.join(valid)}")


def load_card(name_or_path: str | Path) -> DataCard:
    """Load a card by name (``"ixi"``) or path (``"my_cards/site.yaml"``; ``~`` and ``$VARS`` expanded).

    Raises:
        ConfigError: unknown card (with did-you-mean), unknown or missing keys, invalid values;
            the message names the card file and the key.
    """
    p = _locate(name_or_path)
    raw = load_yaml_file(p) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: a data card is a YAML mapping of keys (see data_cards/README.md)")
    _validate(p, raw)
    return DataCard(**raw, source_file=str(p.resolve()))
