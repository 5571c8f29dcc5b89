"""What README.md, data_cards/README.md and docs/*.md point at exists: links and their anchors, repository
paths, ``medssl.…`` names, the flags of ``medssl`` commands written inline, and ``key=value`` overrides.

tests/test_docs_snippets.py runs the fenced code blocks; this file checks the references in the prose, so a
renamed file, heading, function, flag or config key fails here instead of sending a reader nowhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "data_cards" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*```")


def _prose(doc: Path) -> str:
    """The doc without its fenced blocks (those are run or parsed by test_docs_snippets.py)."""
    out, fenced = [], False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return "\n".join(out)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: Markdown code marks and link targets dropped, lower case, punctuation
    other than ``-`` and ``_`` removed, each space a ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """Every heading anchor of ``doc``; a repeated heading gets ``-1``, ``-2``, … as on GitHub."""
    found: set[str] = set()
    for line in _prose(doc).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug, name, k = _slug(m.group(1)), _slug(m.group(1)), 0
            while name in found:
                k += 1
                name = f"{slug}-{k}"
            found.add(name)
    return found


def test_anchors_follow_github():
    assert _slug("3. `medssl data prepare`") == "3-medssl-data-prepare"
    assert _slug("Voxels or millimetres (`augment.physical_units`)") == "voxels-or-millimetres-augmentphysical_units"
    assert _slug("Results (`cpu` budget, 2026-11-24) [link](x.md)") == "results-cpu-budget-2026-11-24-link"


LINKS = [(doc, m.group(1)) for doc in DOCS for m in re.finditer(r"\]\(([^)\s]+)\)", _prose(doc))
         if not re.match(r"^[a-z]+:", m.group(1))]


@pytest.mark.parametrize("doc,target", LINKS, ids=[f"{d.relative_to(ROOT)}->{t}" for d, t in LINKS])
def test_link_target_and_anchor_exist(doc, target):
    path, _, anchor = target.partition("#")
    file = (doc.parent / path).resolve() if path else doc
    assert file.exists(), f"{doc.relative_to(ROOT)} links to {target}: {file} does not exist"
    if anchor and file.suffix == ".md":
        assert anchor in anchors(file), f"{doc.relative_to(ROOT)} links to {target}: no such heading in {file.name}"


def test_links_are_found():
    assert len(LINKS) >= 100 and any("#" in t for _, t in LINKS)


#: paths of this repository (or of ../shared) the docs name in their prose and code
PATH = re.compile(r"(?<![\w./-])((?:\.\./shared/|tests/|medssl/|benchmarks/|configs/|data_cards/|docs/)[\w./*-]*[\w*])")
PATHS = sorted({(doc, m.group(1)) for doc in DOCS for m in PATH.finditer(doc.read_text(encoding="utf-8"))})


def test_repository_paths_named_in_the_docs_exist():
    """``medssl/losses/core.py``, ``tests/train/test_reliability.py``, ``configs/pretrain/mae3d_brain.yaml``, …;
    outputs a command writes (``docs/results/…``, ``docs/img/…``) are committed, so they exist too; a glob
    (``docs/results/multisite_*.json``) matches a file. Paths in ``../shared`` are checked when that folder is
    there."""
    from shared_data import SHARED

    assert len(PATHS) >= 150
    missing = []
    for doc, path in PATHS:
        if path.startswith("../shared/"):
            if not SHARED.is_dir():
                continue
            base, rel = SHARED, path[len("../shared/"):]
        else:
            base, rel = ROOT, path
        if not (any(base.glob(rel)) if "*" in rel else (base / rel).exists()):
            missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, "the docs name paths that do not exist:\n" + "\n".join(missing)


NAMES = sorted({(doc, m.group(1)) for doc in DOCS for m in re.finditer(r"(?<![\w./-])(medssl(?:\.\w+)+)",
                                                                          doc.read_text(encoding="utf-8"))})


def _resolve(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


def test_medssl_names_in_the_docs_resolve():
    """``medssl.eval.openbhb.openbhb_intervals``, ``medssl.train.distributed.seed_step``, …: modules, functions,
    classes and attributes the docs send a reader to."""
    assert len(NAMES) >= 30
    missing = []
    for doc, name in NAMES:
        try:
            _resolve(name)
        except (ImportError, AttributeError) as e:
            missing.append(f"{doc.relative_to(ROOT)}: {name} ({e})")
    assert not missing, "the docs name what medssl does not have:\n" + "\n".join(missing)


def _options() -> dict[str, set[str]]:
    """``{"evaluate": {"--protocol", …}, "data prepare": {…}, …}``: the flags of each medssl command."""
    from medssl.cli import build_parser

    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, p in action.choices.items():
                    walk(p, f"{name} {sub}".strip())
            else:
                found.setdefault(name, set()).update(action.option_strings)

    walk(build_parser(), "")
    return found


#: inline `medssl COMMAND … --flag …` spans of the prose (placeholders such as RUN or … are not parsed)
INLINE = sorted({(doc, m.group(1)) for doc in DOCS for m in re.finditer(r"`(?:\.venv/bin/)?medssl ([^`]+)`",
                                                                          _prose(doc))})


def test_flags_of_inline_medssl_commands_belong_to_that_command():
    """``medssl data prepare --on-bad-file skip``, ``medssl evaluate --no-random-init``: each flag written after
    a command in the prose is one of that command's options."""
    options = _options()
    checked, wrong = 0, []
    for doc, span in INLINE:
        words = span.split()
        command = " ".join(words[:2]) if words[0] == "data" and len(words) > 1 else words[0]
        if command not in options:
            wrong.append(f"{doc.relative_to(ROOT)}: `medssl {span}`: no command {command!r}")
            continue
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", span):
            checked += 1
            if flag not in options[command]:
                wrong.append(f"{doc.relative_to(ROOT)}: `medssl {span}`: {flag} is not an option of {command}")
    assert checked >= 5 and not wrong, "\n".join(wrong)


SECTIONS = ("output_dir", "seed", "data", "encoder", "method", "augment", "train", "eval")
#: ``key=value`` with a value that may be a YAML flow mapping or list with spaces (``{bias_prob: 0, …}``)
OVERRIDE = re.compile(rf"(?<![\w.-])((?:{'|'.join(SECTIONS)})(?:\.\w+)*=(?:\{{[^}}`]*\}}|\[[^\]`]*\]|[^\s;\"'`]*))")


def test_inline_overrides_name_config_keys_with_valid_values():
    """``data.normalise=range``, ``augment.physical_units=true``, ``train.final_lr_fraction=1``: every
    ``key=value`` in an inline code span names a key of the schema with a value of its type (placeholders in
    capitals, such as ``data.cache_dir=CACHE``, are left out)."""
    from medssl.config import RunConfig, _build, _set_path, parse_override

    base = dataclasses.asdict(RunConfig())
    checked, wrong = 0, []
    for doc in DOCS:
        for span in re.findall(r"`([^`\n]+)`", _prose(doc)):
            for word in OVERRIDE.findall(span):
                if re.search(r"=([A-Z…<$]|$)|\.\.\.|…", word):
                    continue
                checked += 1
                try:
                    _build(RunConfig, _set_path(base, *parse_override(word)))
                except Exception as e:  # ConfigError, or a YAML value cut by the span's spaces
                    wrong.append(f"{doc.relative_to(ROOT)}: `{word}`: {e}")
    assert checked >= 15 and not wrong, "\n".join(wrong)


def test_test_functions_named_in_the_docs_exist():
    """``test_two_process_ddp_equals_one_process_with_the_same_global_batch`` and the like: a test the docs cite
    as evidence is still there under that name."""
    named = {n for doc in DOCS for n in re.findall(r"`(test_\w+)`", doc.read_text(encoding="utf-8"))}
    defined = {n for f in (ROOT / "tests").rglob("*.py") for n in re.findall(r"^\s*def (test_\w+)", f.read_text(),
                                                                          flags=re.M)}
    assert len(named) >= 3 and named <= defined, sorted(named - defined)
