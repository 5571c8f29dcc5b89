"""Claims of docs/*.md about what a command writes, checked against the code (hand-made inputs, seconds).

Each test names the sentence it pins, so that a change of behaviour fails here until the doc says it too.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from medssl.eval.report import write_report

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _few_and_fine(folder: Path, targets: tuple[str, ...]) -> list[Path]:
    """A `fewshot` and a `finetune` evaluation of ``targets``, as `medssl evaluate` writes them; age has the
    train-mean baseline that every evaluation of age reports."""
    curve = {"summary": [{"fraction": 0.5, "n_subjects": 9, "mean": 0.6, "std": 0.1}], "metric": "balanced_accuracy",
             "chance": 0.5}
    few = {"label": curve}
    fine = {"label": {"balanced_accuracy": 0.7, "chance": 0.5, "auc": 0.8, "f1_macro": 0.6}}
    baselines = {}
    if "age" in targets:
        few["age"] = {"summary": [{"fraction": 0.5, "n_subjects": 9, "mean": 9.0, "std": 1.0}], "metric": "mae"}
        fine["age"] = {"mae": 8.0, "rmse": 9.0, "r2": 0.3, "pearson_r": 0.6}
        baselines = {"mean_predictor_mae": 15.0}
    write_report(folder / "few", {"protocol": "fewshot", "info": {}, "fewshot": {"pretrained": few},
                                  "baselines": baselines})
    write_report(folder / "fine", {"protocol": "finetune", "info": {}, "finetune": {"pretrained": fine},
                                   "baselines": baselines})
    return [folder / "few", folder / "fine"]


def test_compare_plots_nothing_for_a_fewshot_and_a_finetune_evaluation_of_a_label(tmp_path):
    """docs/evaluation.md, "Report and comparison": a `fewshot` and a `finetune` evaluation share no metric, so
    `medssl compare` draws no figure; with age, both report the train-mean baseline, and the figure is that
    panel alone (the doc said no figure was drawn for such a pair, whatever the targets)."""
    from medssl.eval.compare import collect, plot_compare

    assert plot_compare(_few_and_fine(tmp_path / "label", ("label",)), tmp_path / "a.png") is None
    runs = _few_and_fine(tmp_path / "age", ("label", "age"))
    _, table = collect(runs)
    shared = [m for m, per in table.items() if len(per) == 2]
    assert shared == ["age MAE (years) ↓, baseline: predict train mean"]
    assert plot_compare(runs, tmp_path / "b.png") == tmp_path / "b.png"
    doc = re.sub(r"\s+", " ", (DOCS / "evaluation.md").read_text())
    assert ("e.g. a `fewshot` and a `finetune` evaluation of `label` alone, it writes no figure and says so; "
            "with age both hold the train-mean baseline, and the figure shows that panel alone") in doc


def _table(doc: str, header: str) -> list[str]:
    """The rows of the Markdown table whose header line starts with ``header``."""
    lines = (DOCS / doc).read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header))
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append(ln)
    return rows


def test_every_key_of_encoder_json_is_in_the_table_of_encoders_md(tmp_path):
    """docs/encoders.md, "Export": the table of ``encoder.json`` names each top-level key the export writes
    (it left out ``format``, which ``load_encoder`` checks first), and no other."""
    import json

    from medssl.encoders import build_encoder
    from medssl.export import save_encoder

    args = {"spatial_dims": 2, "in_channels": 1, "width": 4}
    save_encoder(build_encoder("resnet10", **args), tmp_path, "resnet10", args, input_spec={"spatial_dims": 2},
                 pretraining={"method": "simclr"}, evaluation={"targets": ["age"]})
    written = set(json.loads((tmp_path / "encoder.json").read_text()))
    documented = {k for row in _table("encoders.md", "| key | content |")
                  for k in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == written


def _cell_values(cell: str) -> list:
    """``0.3 (4, 0.1–0.25, mean)`` → ``[0.3, 4.0, (0.1, 0.25), "mean"]``; ``0.5, (0,)`` → ``[0.5, (0,)]``;
    ``(0.8, 1.0)`` → ``[(0.8, 1.0)]``; ``all`` and ``None`` → None; ``2 vox`` → 2.0."""
    def one(text: str):
        text = text.strip().removesuffix(" vox")
        if text in ("all", "None"):
            return None
        if "–" in text:
            return tuple(float(v) for v in text.split("–"))
        if text.startswith("("):
            return tuple(float(v) for v in text.strip("()").split(",") if v.strip())
        try:
            return float(text)
        except ValueError:
            return text

    head, _, inner = cell.strip().partition(" (")
    if not inner or head.endswith(","):  # "(1, 1)", "0.5, (0,)", "0.5, all"
        return [one(part) for part in re.split(r",\s+(?![^(]*\))", cell.strip())]
    return [one(head)] + [one(part) for part in inner.removesuffix(")").split(", ")]


def test_the_preset_table_of_augmentations_md_holds_the_presets_values():
    """docs/augmentations.md, "Presets and parameters": every value of the table is the preset's
    (``medssl.transforms.presets.PRESETS``); a probability of 0 stands for the whole row."""
    from medssl.transforms.presets import PRESETS, AugmentParams

    fields = {f.name for f in dataclasses.fields(AugmentParams)}
    rows = _table("augmentations.md", "| key | none | brain_mri | ct | chest_xray |")
    checked = 0
    for row in rows:
        key, *cells = [c.strip() for c in row.strip("|").split("|")][:5]
        first, _, inner = key.partition(" (")
        names = [n.strip() for n in first.split(",")]
        prefix = names[0].removesuffix("_prob")
        names += [f"{prefix}_{n}" if f"{prefix}_{n}" in fields else n for n in inner.rstrip(")").split(", ") if inner]
        assert set(names) <= fields, row
        for preset, cell in zip(("none", "brain_mri", "ct", "chest_xray"), cells):
            values = _cell_values(cell)
            if values == [0.0] and names[0].endswith("_prob"):
                names_here = names[:1]
            else:
                assert len(values) == len(names), f"{row}: {cell!r} has {len(values)} values for {names}"
                names_here = names
            for name, value in zip(names_here, values):
                real = getattr(PRESETS[preset], name)
                real = tuple(float(v) for v in real) if isinstance(real, tuple) else real
                assert real == value, f"augmentations.md: {name} of {preset} is {real!r}, the table says {value!r}"
                checked += 1
    assert checked >= 90


def test_the_config_key_table_names_every_choice_of_a_key():
    """docs/training.md, "Every config key": a key with a fixed set of values lists each of them (the schema's
    ``Literal`` choices, the registered methods, the augmentation presets, the evaluation targets); the
    defaults are checked by tests/test_config.py."""
    import typing

    from medssl import registry
    from medssl.config import EVAL_TARGETS, RunConfig
    from medssl.transforms.presets import list_presets

    rows = {m.group(1): m.group(2) for row in _table("training.md", "| key | default | meaning |")
            if (m := re.match(r"^\| `([\w.]+)` \| `[^`]*` \| (.*) \|$", row))}
    choices = {"method.name": registry.list_methods(), "augment.preset": list_presets(), "eval.targets": EVAL_TARGETS}
    for section in dataclasses.fields(RunConfig):
        if dataclasses.is_dataclass(section.default_factory if section.default_factory is not dataclasses.MISSING
                                    else None):
            for name, tp in typing.get_type_hints(section.default_factory).items():
                if typing.get_origin(tp) is typing.Literal and f"{section.name}.{name}" != "method.metadata":
                    choices[f"{section.name}.{name}"] = [c for c in typing.get_args(tp) if c != ""]
    assert len(choices) >= 11
    for key, values in choices.items():
        listed = set(re.findall(r"`([\w-]+)`", rows[key]))
        assert set(values) <= listed, f"training.md, {key}: {sorted(set(values) - listed)} missing from {rows[key]!r}"


def test_counts_the_docs_state_are_those_shipped():
    """README.md "30 data cards", docs/losses.md "nine registered losses", docs/data.md "the 18 MedMNIST v2 sets"
    and data_cards/README.md "the 12 2D and 6 3D MedMNIST v2 sets": a card or loss added or removed must change
    the sentence too."""
    from medssl import registry
    from medssl.data.card import list_cards, load_card

    cards = list_cards()
    medmnist = [c for c in cards if c.startswith("medmnist_")]
    dims = [load_card(c).dimensionality for c in medmnist]
    words = {9: "nine"}
    root = DOCS.parent
    assert f"; {len(cards)} data cards (" in (root / "README.md").read_text()
    assert f"core, {words.get(len(registry.list_losses()))} registered losses." in (DOCS / "losses.md").read_text()
    assert f"\n{len(medmnist)} MedMNIST v2 sets," in (DOCS / "data.md").read_text()
    assert (f"the {dims.count(2)} 2D and {dims.count(3)} 3D MedMNIST v2 sets"
            in (root / "data_cards" / "README.md").read_text())


def test_the_card_schema_of_data_cards_readme_names_every_key_format_and_role():
    """data_cards/README.md is the card schema: every key a card may hold (``DataCard`` fields, the
    ``preprocessing`` and ``geometry`` keys), every ``format`` and every role appear in it, in backticks."""
    from medssl.data.card import FORMATS, GEOMETRY_KEYS, PREPROCESSING_KEYS, ROLES, DataCard

    text = (DOCS.parent / "data_cards" / "README.md").read_text()
    spans = re.findall(r"`([^`]+)`", text)  # `format: medmnist`, `geometry: {reference: <NIfTI …>}`, `path`
    named = {w for span in spans for w in re.findall(r"(\w+):", span)} | {s for s in spans if re.fullmatch(r"\w+", s)}
    keys = {f.name for f in dataclasses.fields(DataCard)} - {"source_file"}  # set by load_card, not by a card
    missing = sorted((keys | set(PREPROCESSING_KEYS) | set(GEOMETRY_KEYS) | set(FORMATS) | set(ROLES)) - named)
    assert not missing, f"data_cards/README.md does not name {missing}"
