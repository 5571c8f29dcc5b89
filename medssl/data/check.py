"""``medssl data check``: validate every row and every file of a card, and summarise.

The report counts records per site / label / split / sex, summarises ages, lists the image
shapes, spacings, orientations and channel counts seen, and names every bad row or file
with the reason. An unexpected exception while reading one file is reported for that file;
the check goes on with the others. Warnings list DICOM files without a pixel spacing (1 mm
assumed) and files a DICOM series folder holds besides its slices. It prints only safe
information: paths, counts and geometry (readers never expose header identifiers; see
docs/io.md).
"""

from __future__ import annotations

import math
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from medssl.config import ConfigError
from medssl.data.cache import died_in_starting_worker, main_guard_hint, stop_in_starting_worker
from medssl.data.card import DataCard
from medssl.data.manifest import ManifestError, Problem, Record, scan_manifest
from medssl.data.reader import ScanReader, make_reader
from medssl.io.errors import BadFileError, redact

COUNTED = ("site", "label", "split", "sex")
NO_SPACING = "no PixelSpacing/ImagerPixelSpacing: 1 mm assumed; resampling to a physical spacing will be wrong"
#: what to do about it, said after the list of files
NO_SPACING_FIX = ("for these files data.spacing counts pixels (e.g. [4.571, 4.571] takes 1024 px to 224, as the "
                  "nih_chestxray14 card does for its PNGs)")
MAX_LISTED = 10  #: files / folders named per warning


@dataclass
class CheckReport:
    """What :func:`check_card` found. ``ok`` is False when any row or file is bad."""

    card: str
    root: str
    source: str = ""
    n_records: int = 0
    n_subjects: int = 0
    n_files_read: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, Counter] = field(default_factory=dict)
    ages: dict = field(default_factory=dict)
    geometry: dict[str, Counter] = field(default_factory=dict)  #: shape / spacing / orientation / channels → counts

    @property
    def ok(self) -> bool:
        return not self.problems


def _file_problem(record: Record, e: BadFileError) -> Problem:
    """The reader's reason; when it is about a file inside the record (a series' slice), named first."""
    reason = e.reason
    if e.path != Path(record.path):
        try:
            inner = e.path.relative_to(record.path)
        except ValueError:
            inner = e.path
        reason = f"{inner}: {reason}"
    return Problem(record.key, reason, record.path, "file")


def _inspect(reader: ScanReader, dims: int, channels: int,
             record: Record) -> tuple[dict | None, Problem | None, dict[str, str]]:
    """Read one record: ``(geometry info, problem, notes)``; never raises for the file's sake.

    ``notes`` holds warnings about a file that is usable: ``"spacing"`` (a DICOM without pixel
    spacing) and ``"ignored"`` (files of a series folder that are not slices, with reasons).
    """
    try:
        vol = reader(record)
        info = {"shape": "×".join(map(str, vol.spatial_shape)),
                "spacing": "×".join(f"{s:.2f}" for s in vol.spacing) + " mm",
                "orientation": vol.orientation if vol.spatial_dims == 3 else "2D (no patient frame)",
                "channels": str(vol.array.shape[0])}
        notes = {}
        if vol.meta.get("source_format") == "dicom" and vol.meta.get("spacing_source") == "default":
            notes["spacing"] = NO_SPACING
        if vol.meta.get("ignored_files"):
            from medssl.io.dicom_series import ignored_summary

            ignored = vol.meta["ignored_files"]
            notes["ignored"] = f"{len(ignored)} file(s) ignored, not slices: {ignored_summary(ignored)}"
    except BadFileError as e:
        return None, _file_problem(record, e), {}
    except (IndexError, TypeError, ConfigError) as e:  # MedMNIST index out of range, wrong reader options
        return None, Problem(record.key, f"{type(e).__name__}: {e}", record.path, "file"), {}
    except Exception as e:  # noqa: BLE001 - one file must not stop the check of the others
        return None, Problem(record.key, f"unexpected {type(e).__name__} while reading ({redact(str(e))}); "
                                         "please report it as a medssl bug", record.path, "file"), {}
    wrong = []
    if vol.spatial_dims != dims:
        wrong.append(f"image is {vol.spatial_dims}D but the card says dimensionality {dims}")
    if vol.array.shape[0] != channels:
        wrong.append(f"image has {vol.array.shape[0]} channel(s) but the card's preprocessing.channels is "
                     f"{channels} (data prepare rejects it; for colour DICOM see reader_options color)")
    return info, (Problem(record.key, "; ".join(wrong), record.path, "file") if wrong else None), notes


_READER: ScanReader | None = None


def _init(reader: ScanReader) -> None:
    global _READER
    _READER = reader


def _inspect_in_worker(dims: int, channels: int, record: Record):
    return _inspect(_READER, dims, channels, record)


#: what to do when data check's processes re-ran a script without a main guard
CHECK_GUARD_HINT = main_guard_hint("data check's reading processes (workers > 1)", "check with workers=1")


def _read_all(reader: ScanReader, dims: int, channels: int, todo: list[Record], workers: int,
              bar) -> tuple[list[tuple], list[str]]:
    """``(outcomes, warnings)``: :func:`_inspect` of every record, in order. A worker process that dies (killed
    for memory, a crash in a native library, a script without a main guard) leaves the records it had not answered
    as problems, and a warning saying so."""
    if workers <= 1:
        return [(bar.update(), _inspect(reader, dims, channels, r))[1] for r in todo], []
    outcomes = []
    ctx = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(reader,)) as pool:
            n = len(todo)
            for res in pool.map(_inspect_in_worker, [dims] * n, [channels] * n, todo, chunksize=8):
                outcomes.append(res)
                bar.update()
    except BrokenProcessPool as e:
        reason = (f"not checked: a worker process died ({type(e).__name__}) while reading this or a nearby "
                  "file; rerun with --workers 1 to find the file")
        outcomes += [(None, Problem(r.key, reason, r.path, "file"), {}) for r in todo[len(outcomes):]]
        return outcomes, [f"a reading process ended abruptly; {died_in_starting_worker(CHECK_GUARD_HINT)}"]
    return outcomes, []


def _note_warnings(notes: dict[str, list[str]]) -> list[str]:
    """Warning lines: files without pixel spacing, then each series folder with ignored files."""
    out = []
    keys = notes.get("spacing", [])
    if keys:
        more = f", … ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
        out.append(f"{len(keys)} file(s) with {NO_SPACING}: {', '.join(keys[:MAX_LISTED])}{more}; {NO_SPACING_FIX}")
    ignored = notes.get("ignored", [])
    out += ignored[:MAX_LISTED]
    if len(ignored) > MAX_LISTED:
        out.append(f"… and {len(ignored) - MAX_LISTED} more series folder(s) with ignored files")
    return out


def _age_summary(records: list[Record]) -> dict:
    ages = [r.age for r in records if not math.isnan(r.age)]
    return {"n": len(ages), "missing": len(records) - len(ages), "min": min(ages, default=math.nan),
            "max": max(ages, default=math.nan)}


def _warnings(records: list[Record]) -> list[str]:
    out = []
    sites: dict[str, set] = {}
    for r in records:
        sites.setdefault(r.subject, set()).add(r.site)
    multi = sorted(s for s, v in sites.items() if len(v) > 1)
    if multi:
        out.append(f"{len(multi)} subject(s) appear at more than one site (e.g. {multi[0]!r}); leave-site-out folds "
                   "drop them from training when their other site is tested")
    small = sorted(s for s, n in Counter(r.site for r in records if r.site).items() if n < 2)
    if small:
        out.append(f"site(s) with a single scan: {', '.join(small[:5])}{' …' if len(small) > 5 else ''}")
    return out


def check_card(card: DataCard, root: str | Path | None = None, *, read_files: bool = True, workers: int = 1,
               progress: bool = True) -> CheckReport:
    """Validate every row and file of ``card`` and summarise the data set.

    Args:
        card: the data card.
        root: data root (overrides ``card.root``).
        read_files: decode every image (finds truncated / corrupt files, wrong
            dimensionality); ``False`` checks the table and file existence only.
        workers: processes decoding in parallel.
        progress: progress bar while reading files.

    Returns:
        :class:`CheckReport`; ``report.ok`` is False when anything is bad.
    """
    if workers > 1:
        stop_in_starting_worker("a data check with worker processes", CHECK_GUARD_HINT)
    root_path = card.resolve_root(root)
    report = CheckReport(card=card.name, root=str(root_path))
    try:
        scan = scan_manifest(card, root)
    except ManifestError as e:  # the message names the table (and row): no prefix of our own
        report.source = str(card.manifest or card.npz or card.files or card.name)
        report.problems.append(Problem("cannot read the records", str(e)))
        return report
    records = scan.records
    report.source, report.n_records = scan.source, len(records)
    report.n_subjects = len({r.subject for r in records})
    report.problems = list(scan.problems)  # (scans listed twice among them)
    report.warnings = _warnings(records)
    report.counts = {k: Counter(getattr(r, k) or "(empty)" for r in records) for k in COUNTED}
    report.ages = _age_summary(records)
    report.geometry = {k: Counter() for k in ("shape", "spacing", "orientation", "channels")}
    missing = {p.path for p in scan.problems if p.kind == "missing"}
    todo = [r for r in records if r.path not in missing]
    if not read_files or not todo:
        return report
    try:
        reader = make_reader(card, root)
    except (BadFileError, ValueError) as e:
        report.problems.append(Problem("geometry", str(e)))
        return report
    channels = card.preprocessing.get("channels", 1)  # (a positive int: checked when the card loads)
    bar = tqdm(total=len(todo), desc="check", unit="file", disable=not progress)
    outcomes, pool_warnings = _read_all(reader, card.dimensionality, channels, todo, workers, bar)
    bar.close()
    notes: dict[str, list[str]] = {}
    for record, (info, problem, file_notes) in zip(todo, outcomes, strict=True):
        if info is not None:
            for k, v in info.items():
                report.geometry[k][v] += 1
        if problem is not None:
            report.problems.append(problem)
        for kind, text in file_notes.items():
            notes.setdefault(kind, []).append(record.key if kind == "spacing" else f"{record.key}: {text}")
    report.problems = _merge_shared_file_problems(report.problems)
    report.warnings += _note_warnings(notes) + pool_warnings
    report.n_files_read = len(todo)
    return report


def _merge_shared_file_problems(problems: list[Problem]) -> list[Problem]:
    """One line per file for a reason shared by every record read from it (a corrupt MedMNIST
    ``.npz`` holds thousands of records), naming the first record and how many more."""
    groups: dict[tuple[str, str], list[Problem]] = {}
    merged: list[Problem | tuple[str, str]] = []
    for p in problems:
        if p.kind != "file" or not p.path:
            merged.append(p)
            continue
        key = (p.path, p.reason)
        if key not in groups:
            groups[key] = []
            merged.append(key)
        groups[key].append(p)
    out = []
    for item in merged:
        if isinstance(item, Problem):
            out.append(item)
            continue
        first, n = groups[item][0], len(groups[item])
        out.append(first if n == 1 else
                   Problem(f"{first.where} and {n - 1} more record(s) of that file", first.reason, first.path, "file"))
    return out


def _counter_line(counter: Counter, limit: int = 12) -> str:
    if not counter:
        return "—"
    items = counter.most_common()
    text = ", ".join(f"{k}: {n}" for k, n in items[:limit])
    return text + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def format_report(report: CheckReport, max_problems: int | None = None) -> str:
    """Human-readable text of a :class:`CheckReport`: every problem, or the first ``max_problems``."""
    a = report.ages
    lines = [f"data check: card {report.card}", f"root:    {report.root}", f"source:  {report.source}",
             f"records: {report.n_records} ({report.n_subjects} subjects); files read: {report.n_files_read}"]
    if a:
        ages = f"{a['n']} with age" + (f" ({a['min']:.1f}–{a['max']:.1f} y)" if a["n"] else "") + f", {a['missing']} missing"
        lines.append(f"age:     {ages}")
    for k in COUNTED:
        if k in report.counts:
            lines.append(f"{k + ':':<9}{_counter_line(report.counts[k])}")
    for k, counter in report.geometry.items():
        lines.append(f"{k + ':':<13}{_counter_line(counter)}")
    for w in report.warnings:
        lines.append(f"warning: {w}")
    if report.problems:
        lines.append(f"\nbad rows / files ({len(report.problems)}):")
        lines += [f"  {p}" for p in report.problems[:max_problems]]
        if max_problems is not None and len(report.problems) > max_problems:
            lines.append(f"  … and {len(report.problems) - max_problems} more")
    lines.append(f"\nresult: {'OK' if report.ok else f'{len(report.problems)} problem(s)'}")
    return "\n".join(lines)
