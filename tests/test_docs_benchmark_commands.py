"""Every ``python benchmarks/<script>.py …`` command of README.md and docs/*.md parses with that script's own
parser (flags, choices, argument counts), and its ``--set KEY=VALUE`` pairs name fields of the script's budget.

Commands are read from the fenced blocks (continuation lines joined, ``for s in 0 1; do`` loops and
``S="…"`` variables expanded with their first value, ``{0,1,2}`` brace lists expanded) and from inline code
spans. Nothing runs: ``ArgumentParser.parse_args`` stops the script's ``main`` right after parsing. A command
with a placeholder (``…``, ``<JSON>``) is left out.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
from benchmark_module import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SEPARATORS = {";", "&", "&&", "|", "||", "(", ")"}


def _expand(word: str) -> list[str]:
    """Bash brace expansion of number lists: ``s{0,1}/r.json`` → ``s0/r.json``, ``s1/r.json``."""
    m = re.search(r"\{(\d+(?:,\d+)+)\}", word)
    if not m:
        return [word]
    return [w for alt in m.group(1).split(",") for w in _expand(word[:m.start()] + alt + word[m.end():])]


def _commands(text: str) -> list[tuple[str, list[str]]]:
    """``(script, argv)`` of each ``python benchmarks/<script>.py …`` in a shell text."""
    env: dict[str, str] = {}
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if m := re.match(r"^(\w+)=\"([^\"]*)\"$", line):
            env[m.group(1)] = m.group(2)
            continue
        if m := re.match(r"^for (\w+) in (\S+)", line):
            env[m.group(1)] = m.group(2)
        line = re.sub(r"\$\{?(\w+)\}?", lambda v: env.get(v.group(1), v.group(0)), line)
        if "…" in line or "..." in line or "<" in line or "$" in line:
            continue
        line = re.sub(r"\s\d?>&\d|\s\d?>>?\s*\S+", " ", line)  # redirections: > log, 2>&1
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:
            continue
        while words:
            i = next((k for k, w in enumerate(words) if w in SEPARATORS), len(words))
            part, words = words[:i], words[i + 1:]
            if "python" in part and len(part) > part.index("python") + 1:
                m = re.fullmatch(r"benchmarks/(\w+)\.py", part[part.index("python") + 1])
                if m:
                    argv = [re.sub(r"^\[(-.*)\]$", r"\1", w) for w in part[part.index("python") + 2:]]  # [--opt]
                    found.append((m.group(1), [a for w in argv for a in _expand(w)]))
    return found


def _doc_commands() -> list[tuple[Path, str, list[str]]]:
    out = []
    for doc in DOCS:
        text, blocks, prose, fenced = doc.read_text(encoding="utf-8"), [], [], False
        for line in text.splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
                blocks.append("")
            elif fenced:
                blocks[-1] += line + "\n"
            else:
                prose.extend(s for s in re.findall(r"`([^`]+)`", line) if "benchmarks/" in s)
        for text in [*blocks, *prose]:
            out.extend((doc, script, argv) for script, argv in _commands(text))
    return out


COMMANDS = _doc_commands()


def test_commands_are_found_and_split_as_bash_would():
    text = ('S="--budget cpu --jobs 2"\nfor s in 0 1; do python benchmarks/a.py --seeds $s --out r/s$s & done; wait\n'
            "python benchmarks/b.py $S --merge r/s{0,1}/x.json --common \"x=1;y={a: 1}\" > log 2>&1  # note\n"
            "python benchmarks/c.py --set a=1 \\\n    b=2 && python benchmarks/d.py --quick [--x] | tail\n")
    assert _commands(text) == [("a", ["--seeds", "0", "--out", "r/s0"]),
                               ("b", ["--budget", "cpu", "--jobs", "2", "--merge", "r/s0/x.json", "r/s1/x.json",
                                      "--common", "x=1;y={a: 1}"]),
                               ("c", ["--set", "a=1", "b=2"]), ("d", ["--quick", "--x"])]
    assert len(COMMANDS) >= 80


class _Parsed(Exception):
    """Raised by the patched parse_args with the parsed namespace, before the script does anything."""


@pytest.fixture(scope="module")
def parse():
    """``parse(script, argv)``: the namespace ``benchmarks/<script>.py``'s own parser makes of ``argv``."""
    modules = {}
    real = argparse.ArgumentParser.parse_args

    def stop(self, args=None, namespace=None):
        raise _Parsed(real(self, args, namespace))

    def run(script: str, argv: list[str]) -> tuple[object, argparse.Namespace]:
        if script not in modules:
            modules[script] = load_benchmark(script)
        mp = pytest.MonkeyPatch()
        mp.setattr(argparse.ArgumentParser, "parse_args", stop)
        try:
            modules[script].main(argv)
        except _Parsed as e:
            return modules[script], e.args[0]
        finally:
            mp.undo()
        raise AssertionError(f"benchmarks/{script}.py main() did not parse its arguments")

    return run


@pytest.mark.parametrize("doc,script,argv", COMMANDS,
                         ids=[f"{d.name}:{s} {' '.join(a)[:50]}" for d, s, a in COMMANDS])
def test_benchmark_command_in_docs_parses(doc, script, argv, parse, capsys):
    where = f"{doc.relative_to(ROOT)}: `python benchmarks/{script}.py {shlex.join(argv)}`"
    try:
        module, args = parse(script, argv)
    except SystemExit as e:
        pytest.fail(f"{where} does not parse: {capsys.readouterr().err.strip().splitlines()[-1:]} ({e})")
    if getattr(args, "set", None):
        budget = (module.DEFAULTS[args.dataset] if hasattr(module, "DEFAULTS") else module.Budget())
        try:
            module.apply_set(budget, args.set)
        except SystemExit as e:
            pytest.fail(f"{where}: {e}")
