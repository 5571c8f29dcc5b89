"""The code examples of README.md and docs/*.md run as printed.

Every ```python block is executed in a fresh namespace with a temporary folder as the working directory;
a test id names the doc, the block's index and its first line. A block that needs what a test cannot have
(a GPU, a full data set, hours) is marked in the Markdown on the line right above it with
``<!-- snippet: skip (why) -->`` and is reported as skipped with that reason. A block that reads an export
folder is marked ``<!-- snippet: setup NAME as PATH -->``: the test copies the export of a real 1-step
pretraining run (``EXPORTS[NAME]``, on a tiny synthetic cohort, built once per session) to PATH first. A block
that reads the shared real data is marked ``<!-- snippet: shared data/ixi -->`` and skips when that folder is
absent (:func:`shared_data.shared_path`).

A ```yaml block is valid YAML, and one that is a data card (``name:`` and ``dimensionality:``) loads with
``load_card``. Every `medssl …` command in a ```bash block is parsed (not run) by the CLI's own argparse parser, so a
renamed or removed flag in the docs fails here.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from shared_data import shared_path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
MARK = re.compile(r"^\s*<!--\s*snippet:\s*(skip\s*\((?P<skip>.+)\)|setup\s+(?P<setup>\w+)\s+as\s+(?P<path>\S+)"
                  r"|shared\s+(?P<shared>\S+))\s*-->\s*$")
#: the exports a snippet may ask for: key=value overrides of a 1-step run on a 32³ synthetic cohort
EXPORTS = {"densenet121_export": ["encoder.name=densenet121", "encoder.options.width=4", "method.name=simclr"],
           "vit_mae_export": ["encoder.name=vit_tiny", "encoder.options.img_size=[32,32,32]",
                              "encoder.options.patch_size=16", "method.name=mae", "augment.preset=none"]}


def _blocks(lang: str, docs: list[Path] = DOCS) -> list[tuple[Path, int, int, str, re.Match | None]]:
    """``(doc, index, line, code, mark)`` of every fenced block of ``lang``, dedented to its fence."""
    found = []
    for doc in docs:
        lines = doc.read_text(encoding="utf-8").splitlines()
        i, index = 0, 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m or not m.group(2):
                i += 1
                continue
            indent, start = len(m.group(1)), i
            i += 1
            while i < len(lines) and not FENCE.match(lines[i]):
                i += 1
            if m.group(2) == lang:
                prev = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
                code = "\n".join(ln[indent:] for ln in lines[start + 1:i])
                found.append((doc, index, start + 1, code, MARK.match(prev)))
                index += 1
            i += 1
    return found


def _id(block) -> str:
    doc, index, _, code, _ = block
    first = next((ln.strip() for ln in code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    return f"{doc.relative_to(ROOT)}[{index}] {first[:50]}"


PYTHON = _blocks("python")
BASH = _blocks("bash")
YAML = _blocks("yaml")


def test_the_docs_have_python_snippets():
    """Guards the parser: a change of fence style must not turn this file into zero silent tests."""
    assert len(PYTHON) >= 8 and len(BASH) >= 10


def test_blocks_marks_and_commands_are_found(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n<!-- snippet: skip (needs a CUDA GPU) -->\n```python\na = 1\n```\n\n"
                   "* item\n\n  <!-- snippet: setup vit_mae_export as out/e -->\n  ```python\n  b = 2\n  ```\n"
                   "<!-- snippet: shared data/no-such-folder -->\n```python\nc = 3\n```\n"
                   "```\nmedssl not-a-command\n```\n```bash\nCUDA_VISIBLE_DEVICES=0 .venv/bin/medssl list  # all\n"
                   "pip install medssl torch\ntorchrun --nproc_per_node=2 -m medssl.cli pretrain \\\n  a.yaml x=1\n```\n")
    (a, _, line_a, code_a, mark_a), (_, index_b, _, code_b, mark_b), (_, _, _, _, mark_c) = _blocks("python", [doc])
    assert (line_a, code_a, mark_a["skip"]) == (4, "a = 1", "needs a CUDA GPU")
    assert (index_b, code_b, mark_b["setup"], mark_b["path"]) == (1, "b = 2", "vit_mae_export", "out/e")
    assert mark_c["shared"] == "data/no-such-folder"
    [(_, _, _, shell, _)] = _blocks("bash", [doc])
    assert _medssl_commands(shell) == [["list"], ["pretrain", "a.yaml", "x=1"]]


@pytest.fixture(autouse=True)
def _one_thread():
    """Snippets run on one torch thread (the CI budget): the augmentation example took 0.4 s on one thread
    and 14 s on two while other processes kept both cores of the 2-core VM busy."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """``export(name)``: the folder of ``EXPORTS[name]``, pretrained for one step and exported on first use."""
    from medssl.cli import main

    tmp, built = tmp_path_factory.mktemp("snippet_exports"), {}

    def export(name: str) -> Path:
        if name not in EXPORTS:
            raise KeyError(f"snippet setup {name!r} is not one of {sorted(EXPORTS)} (tests/test_docs_snippets.py)")
        if name not in built:
            if not (tmp / "cohort").is_dir():
                assert main(["synth", str(tmp / "cohort"), "--subjects", "12", "--sites", "2", "--shape", "32", "32", "32"]) == 0
            assert main(["pretrain", f"data.root={tmp / 'cohort'}", f"output_dir={tmp / name}", "data.shape=[32,32,32]",
                         "augment.crop_size=[32,32,32]", "data.test_fraction=0.3", "train.batch_size=8", "train.epochs=1",
                         "train.progress=false", *EXPORTS[name]]) == 0
            assert main(["export", str(tmp / name), "--out", str(tmp / f"{name}_out")]) == 0
            built[name] = tmp / f"{name}_out"
        return built[name]

    return export


@pytest.mark.parametrize("block", PYTHON, ids=[_id(b) for b in PYTHON])
def test_python_snippet_runs(block, tmp_path, monkeypatch, exports):
    doc, index, line, code, mark = block
    if mark and mark["skip"]:
        pytest.skip(f"{doc.relative_to(ROOT)}:{line}: {mark['skip']}")
    if mark and mark["shared"]:
        shared_path(*mark["shared"].split("/"))  # skips when absent
    if mark and mark["setup"]:
        shutil.copytree(exports(mark["setup"]), tmp_path / mark["path"])
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{doc.relative_to(ROOT)}:{line} (python block {index})", "exec"), {"__name__": "__snippet__"})


@pytest.mark.parametrize("block", YAML, ids=[_id(b) for b in YAML])
def test_yaml_snippet_loads(block, tmp_path):
    import yaml

    from medssl.data.card import load_card

    doc, _, line, code, _ = block
    data = yaml.safe_load(code)
    if isinstance(data, dict) and {"name", "dimensionality"} <= set(data):
        (tmp_path / "card.yaml").write_text(code)
        load_card(tmp_path / "card.yaml")


def _medssl_commands(code: str) -> list[list[str]]:
    """The arguments of each `medssl …`, `.venv/bin/medssl …` or `… -m medssl[.cli] …` command of a shell block
    (continuation lines joined, comments dropped; a command given by a shell variable is left out)."""
    commands = []
    for ln in code.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|;|\|\|?", ln.split(" #", 1)[0]):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            while words and re.match(r"^\w+=", words[0]):  # VAR=value prefixes
                words = words[1:]
            if words and (words[0] == "medssl" or words[0].endswith("/medssl")):
                args = words[1:]
            elif "-m" in words[:-1] and words[words.index("-m") + 1] in ("medssl", "medssl.cli"):
                args = words[words.index("-m") + 2:]
            else:
                continue
            if args and not args[0].startswith("$"):
                commands.append(args)
    return commands


BASH_COMMANDS = [(b, cmd) for b in BASH for cmd in _medssl_commands(b[3])]


@pytest.mark.parametrize("block,argv", BASH_COMMANDS,
                         ids=[f"{_id(b).split(']')[0]}] medssl {' '.join(c)[:60]}" for b, c in BASH_COMMANDS])
def test_medssl_command_in_docs_parses(block, argv, capsys, monkeypatch):
    """Parsed as `medssl` parses it; a `pretrain` command's YAML file and key=value overrides are also loaded
    and validated (from the repository root, where the docs' relative config paths point)."""
    from medssl.cli import parse_args
    from medssl.config import ConfigError, load_config

    where = f"{block[0].relative_to(ROOT)}:{block[2]}: `medssl {' '.join(argv)}`"
    try:
        args = parse_args(argv)
    except SystemExit as e:
        assert not e.code, f"{where} does not parse: {capsys.readouterr().err.strip()}"
        return  # --help
    if args.command == "pretrain":
        monkeypatch.chdir(ROOT)
        config, overrides = args.config, list(args.overrides)
        if config is not None and "=" in config and not Path(config).is_file():
            config, overrides = None, [config, *overrides]
        try:
            load_config(config, overrides)
        except ConfigError as e:
            pytest.fail(f"{where}: {e}")
