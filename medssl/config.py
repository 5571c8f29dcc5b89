"""Typed run configuration: dataclass schema, YAML files, ``key=value`` overrides, validation.

A run is described by :class:`RunConfig`. Values come, in order, from the dataclass defaults,
an optional YAML file (a *partial* nested mapping), then command-line overrides such as
``train.epochs=5`` or ``augment.crop_size=[32,32,32]`` (values parsed as YAML). Every
unknown key, wrong type and out-of-range value raises :class:`ConfigError` naming the key and
the valid choices. Registry-backed names (encoder, method, loss) and the free-form option
dicts that are passed to their constructors are checked against the registry and the
constructor signature (:mod:`medssl.config_checks`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from medssl.atomic import atomic_write


#: metadata an evaluation can predict (``eval.targets``, ``medssl evaluate --targets``)
EVAL_TARGETS = ("age", "site", "sex", "label")


#: intensity normalisations of the preprocessing (``data.normalise``, a card's ``preprocessing.normalise``)
NORMALISATIONS = ("zscore", "minmax", "range", "none")


class ConfigError(ValueError):
    """A configuration problem; the message names the key and what to do."""


@dataclass
class DataConfig:
    """Where scans come from and how each is preprocessed (deterministic, once, cached)."""

    card: str = "synthetic"  #: data card name (data_cards/<name>.yaml) or path to a card
    root: str = ""  #: data root; overrides the card's ``root`` when set
    cache_dir: str = ""  #: preprocessed-array cache; "" = <output_dir>/cache
    shape: list[int] = field(default_factory=lambda: [48, 48, 48])  #: crop/pad target (voxels)
    spacing: list[float] = field(default_factory=list)  #: resample to this spacing (mm); [] = keep
    normalise: Literal["zscore", "minmax", "range", "none"] = "zscore"  #: one of NORMALISATIONS
    test_fraction: float = 0.25  #: subject-level held-out fraction for evaluation
    on_bad_file: Literal["error", "skip"] = "error"
    num_workers: int = 0  #: DataLoader workers (and cache-building processes)
    preload: Literal["none", "ram", "gpu"] = "none"  #: where the preprocessed cache is held while training
    limit: int = 0  #: use only the first N records (0 = all); for smoke tests


@dataclass
class EncoderConfig:
    """Which backbone; ``options`` go to the registered encoder's constructor."""

    name: str = "resnet18"
    spatial_dims: int = 3
    in_channels: int = 1
    options: dict = field(default_factory=dict)


@dataclass
class MethodConfig:
    """Pretraining method: encoder + projection head + loss + views."""

    name: str = "simclr"
    n_views: int = 2
    proj_hidden_dim: int = 512
    proj_dim: int = 128
    loss: dict = field(default_factory=dict)  #: options for the method's loss constructor
    metadata: list[Literal["age", "sex", "site"]] = field(default_factory=lambda: ["age"])  #: card roles for y-aware / regression
    label_column: Literal["", "label", "sex", "site"] = ""  #: card role used as class labels ("" = label-free)
    bias_column: Literal["site", "sex", "label"] = "site"  #: card role used as FairKL bias labels
    fairkl_weight: float = 0.0
    #: contrastive methods: "joint" = one encoder pass over all views (BatchNorm statistics span both
    #: views), "separate" = one pass per view (the stock MONAI recipe, nidl)
    views_per_pass: Literal["joint", "separate"] = "joint"
    options: dict = field(default_factory=dict)  #: constructor options of non-contrastive methods (e.g. mask_ratio)


@dataclass
class AugmentConfig:
    """Batch view generation; ``overrides`` change the preset's parameters."""

    preset: str = "brain_mri"
    crop_size: list[int] = field(default_factory=lambda: [40, 40, 40])
    overrides: dict = field(default_factory=dict)
    #: rescale the preset's voxel-unit strengths (blur, elastic, motion, low resolution) from its
    #: reference spacing to data.spacing, so views have the same strength in mm on any grid, and
    #: rotate in mm on anisotropic grids; needs data.spacing (docs/augmentations.md, "Voxels or millimetres")
    physical_units: bool = False


@dataclass
class TrainConfig:
    """Optimisation loop."""

    epochs: int = 10
    batch_size: int = 32  #: GLOBAL batch (all GPUs together); per-GPU = batch_size / world size
    grad_accum_steps: int = 1  #: micro-batches of batch_size per optimiser step
    optimizer: Literal["adamw", "sgd", "lars"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  #: for sgd / lars
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.01  #: cosine decay ends at this × lr; 1.0 = constant lr after warm-up
    grad_clip: float = 0.0  #: max grad norm; 0 = off
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    precision: Literal["auto", "bf16", "fp32"] = "auto"  #: auto = bf16 on a GPU with native bf16 (A100, H100…), else fp32
    compile: bool = False  #: torch.compile the encoder in place (pays for ViTs on GPU, see docs/training.md)
    keep_checkpoints: int = 2
    checkpoint_every: int = 0  #: also checkpoint every N steps (0: at the end of each epoch only)
    checkpoint_epochs: int = 1  #: checkpoint at the end of every N-th epoch (and of the last one)
    monitor_every: int = 0  #: linear age/label probe on a validation split every N epochs (0: off)
    resume: str = ""  #: "" | auto | path to a checkpoint
    progress: bool = True


@dataclass
class EvalConfig:
    """Linear probes run after pretraining."""

    targets: list[str] = field(default_factory=lambda: ["age", "site"])
    random_init_baseline: bool = True
    batch_size: int = 32


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.yaml`` in the run directory."""

    output_dir: str = "runs/default"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------- building


def _did_you_mean(key: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(key: str, value: Any, tp: Any) -> Any:
    """Return ``value`` coerced to ``tp`` (int→float only) or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            shown = ", ".join('"" (empty)' if c == "" else str(c) for c in choices)
            raise ConfigError(f"{key}: {value!r} is not valid. Valid choices: {shown}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r} ({type(value).__name__})")
        (item_tp,) = typing.get_args(tp)[:1]
        return [_check_value(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _check_value(key, value, option)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is dict and value is None:
        return {}
    if tp is str and isinstance(value, os.PathLike):  # a pathlib.Path set in Python (output_dir, data.root, …)
        return os.fspath(value)
    if tp in (int, float, str, bool, dict):
        if isinstance(value, bool) and tp is not bool:
            raise ConfigError(f"{key}: expected {tp.__name__}, got boolean {value!r}")
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
        return value
    raise TypeError(f"unsupported config type {tp} for {key}")  # schema bug, not user error


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            full = f"{prefix}{key}"
            raise ConfigError(f"unknown config key {full!r}.{_did_you_mean(key, names)} "
                              f"Valid keys{' under ' + prefix[:-1] if prefix else ''}: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp, value, key = hints[f.name], data[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, value, key + ".")
        else:
            kwargs[f.name] = _check_value(key, value, tp)
    return cls(**kwargs)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("options", "loss", "overrides"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=5"`` → ``(["train", "epochs"], 5)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({_first_line(e)}); "
                          "quote lists like 'data.shape=[32,32,32]' and close every bracket") from None
    return key.strip().split("."), value


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    keeps the last one silently, so a duplicated ``columns:`` or ``train:`` would drop settings)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads ``1e-4`` as a string (it wants ``1.0e-4``); read it as YAML 1.2 and Python do: a float
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_yaml(text: str):
    """Parse YAML safely (no Python objects), refusing keys given twice in one mapping and reading
    exponents without a decimal point (``1e-4``) as floats."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def load_yaml_file(path: Path, hint: str = ""):
    """:func:`load_yaml` of a file, read as UTF-8 (YAML's encoding) whatever the machine's locale.

    Raises:
        ConfigError: naming the file: not UTF-8 text (the first bad byte's offset), or not valid YAML
            (where PyYAML found the problem, then ``hint``).
    """
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(e)}){hint}") from None


def _first_line(error: yaml.YAMLError) -> str:
    """PyYAML's message on one line, with the line/column where it found the problem."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(error, 'problem', None) or error}{where}"


def _set_path(data: dict, path: list[str], value: Any) -> dict:
    """Copy of ``data`` with ``value`` set at ``path`` (an override replaces what it names)."""
    out = dict(data)
    if len(path) == 1:
        out[path[0]] = value
    else:
        child = out.get(path[0])
        out[path[0]] = _set_path(child if isinstance(child, dict) else {}, path[1:], value)
    return out


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = (), *,
                for_training: bool = True) -> RunConfig:
    """Build a validated :class:`RunConfig` from defaults, a YAML file and overrides. ``for_training=False``
    reads back a trained run's config (evaluation, export): settings refused only because training would
    ignore them or learn nothing from them (:func:`~medssl.config_checks.validate`) do not stop it."""
    if isinstance(overrides, str):  # iterated, it would be one override per letter ("override 't' must look …")
        raise ConfigError(f"overrides must be a list of key=value strings, e.g. [{overrides!r}], not a string")
    data = dataclasses.asdict(RunConfig())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        loaded = load_yaml_file(path, "; check the indentation there") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections (data:, train:, …)")
        try:
            data = _merge(data, loaded)
            _build(RunConfig, loaded)  # report unknown keys relative to the file
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    for text in overrides:  # `method.loss.sigma=2` sets one option; `method.loss={...}` replaces the dict
        data = _set_path(data, *parse_override(text))
    cfg = _build(RunConfig, data)
    from medssl.config_checks import validate  # it imports this module

    try:
        validate(cfg, for_training)
    except ConfigError as e:  # name the file the value may come from (a run's config.yaml, a recipe)
        where = f" (config {path}{' with overrides ' + ' '.join(overrides) if overrides else ''})" if path else ""
        raise ConfigError(f"{e}{where}{_resume_note(cfg) if for_training else ''}") from None
    return cfg


def check_config(cfg: RunConfig, for_training: bool = True) -> RunConfig:
    """Check a config built or changed in Python as :func:`load_config` checks a file and its overrides.

    An attribute that is no key (``cfg.train.epoch = 5``, a typo Python accepts silently), a wrong type
    (``cfg.train.epochs = "5"``) or value (a crop larger than ``data.shape``) is a :class:`ConfigError`
    naming the key. Values are coerced in place as when loaded (an int for a float, a tuple for a list), so
    ``config.yaml`` reads back the same. Returns ``cfg``.
    """
    checked = _build(RunConfig, _attributes(cfg))
    from medssl.config_checks import validate  # it imports this module

    validate(checked, for_training)
    for f in dataclasses.fields(RunConfig):
        setattr(cfg, f.name, getattr(checked, f.name))
    return cfg


def _attributes(obj: Any) -> dict:
    """A config object as a nested dict of every attribute it holds, also one assigned in Python that is no key."""
    return {k: _attributes(v) if dataclasses.is_dataclass(v) else v for k, v in vars(obj).items()}


def _resume_note(cfg: RunConfig) -> str:
    """What to do when a resume (``train.resume`` set) is refused for a setting refused only for training: the
    usual fix (change it) is refused too, as the checkpoint's settings must match (``check_compatible``)."""
    from medssl.config_checks import validate

    if not cfg.train.resume:
        return ""
    try:
        validate(cfg, for_training=False)
    except ConfigError:
        return ""  # refused for reading a run too: the message's own fix applies
    return (". With --resume: a run trained with this setting before medssl refused it cannot be continued (a resume "
            "keeps the settings the run was trained with, so changing it is refused too); `medssl evaluate` and "
            "`medssl export` still read that run. To train further, start a new run (another output_dir, no "
            "--resume) with the setting changed")


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: RunConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (what `load_config(path)` reads back identically), atomically: an
    earlier config.yaml is replaced whole, never left half-written."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def config_hash(cfg: RunConfig | dict) -> str:
    """Short stable hash of a config (for export specs and cache keys)."""
    data = to_dict(cfg) if isinstance(cfg, RunConfig) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
