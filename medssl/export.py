"""Clean encoder export: safetensors weights plus a JSON spec, and loading them back.

An export folder holds

* ``encoder.safetensors`` — the encoder's weights with the keys of the plain network
  (for ResNet/DenseNet/ViT: the MONAI network, no ``module.``/``encoder.``/``net.``
  prefixes), so they load with ``strict=True`` into ``monai.networks.nets.<class>(**kwargs)``
  as given in the spec's ``monai`` entry (DenseNet: after ``class_layers.out = nn.Identity()``);
* ``encoder.json`` — the architecture (registry name and arguments), the input it was
  trained with (spatial dims, channels, shape, crop, spacing in mm, orientation,
  normalisation, the card's reader options that set intensities such as DICOM ``voi``,
  modality, data card name), the pretraining method, config hash,
  checkpoint step, the run's default evaluation targets (``eval.targets``, which
  ``medssl evaluate EXPORT`` uses without ``--targets``), medssl version and the SHA-256
  of the weights file.

The spec never holds patient data: no file paths, data roots, subject ids or metadata
values. Loading never unpickles (safetensors; run checkpoints are read with
``torch.load(weights_only=True)``).

>>> export_run("runs/mae3d_brain", "exports/mae3d_brain")      # or: medssl export RUN --out DIR
>>> encoder = medssl.load_encoder("exports/mae3d_brain")        # eval mode, ready for features
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from medssl.atomic import atomic_write
from medssl.config import EVAL_TARGETS

FORMAT = "medssl-encoder"
FORMAT_VERSION = 1
SPEC_FILE = "encoder.json"
WEIGHTS_FILE = "encoder.safetensors"


class ExportError(RuntimeError):
    """An export folder that cannot be read or does not fit the architecture it names."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encoder_state_dict(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """Weights of the plain network (``encoder.plain_module()``): detached, CPU, contiguous."""
    plain = encoder.plain_module() if hasattr(encoder, "plain_module") else encoder
    return {k: v.detach().cpu().contiguous() for k, v in plain.state_dict().items()}


def save_encoder(encoder: nn.Module, out_dir: str | Path, architecture: str, arguments: dict,
                 input_spec: dict | None = None, pretraining: dict | None = None,
                 evaluation: dict | None = None) -> Path:
    """Write ``encoder.safetensors`` and ``encoder.json`` into ``out_dir``.

    Args:
        encoder: a registered encoder.
        architecture: its registry name (e.g. ``"resnet18"``).
        arguments: keyword arguments of :func:`medssl.encoders.build_encoder` that rebuild it
            (``spatial_dims``, ``in_channels`` and the encoder options).
        input_spec: what the encoder expects as input (see :func:`input_spec_from_config`).
        pretraining: method, config hash, checkpoint step, … (no patient data).
        evaluation: ``{"targets": [...]}``, the run's ``eval.targets`` (names among
            :data:`medssl.config.EVAL_TARGETS`, no values); omitted when None.

    Returns:
        ``out_dir``.
    """
    from medssl import __version__

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file, not a folder; give a new or existing folder for the export "
                          "(medssl export --out DIR)")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_FILE
    umask = os.umask(0)
    os.umask(umask)

    def write_weights(tmp: Path) -> None:
        save_file(encoder_state_dict(encoder), str(tmp), metadata={"format": FORMAT, "architecture": architecture})
        os.chmod(tmp, 0o666 & ~umask)  # safetensors creates 0600; an export is meant to be shared like encoder.json

    atomic_write(weights, write_weights)
    spec = {"format": FORMAT, "format_version": FORMAT_VERSION, "medssl_version": __version__,
            "architecture": architecture, "arguments": _with_defaults(architecture, arguments),
            "out_dim": int(encoder.out_dim),
            "monai": encoder.monai_network() if hasattr(encoder, "monai_network") else None,
            "weights": {"file": WEIGHTS_FILE, "sha256": _sha256(weights)},
            "input": input_spec or {}, "pretraining": pretraining or {},
            **({"evaluation": evaluation} if evaluation is not None else {})}
    atomic_write(out_dir / SPEC_FILE, lambda tmp: tmp.write_text(json.dumps(spec, indent=2) + "\n"))
    return out_dir


def _with_defaults(architecture: str, arguments: dict) -> dict:
    """``arguments`` completed with the registered factory's defaults (e.g. ResNet's ``conv1_stride``), so an
    export rebuilds the same network even if a later medssl changes a default."""
    import inspect

    from medssl.registry import ENCODERS, _load_all

    _load_all()
    if architecture not in ENCODERS:
        return dict(arguments)
    params = inspect.signature(ENCODERS.get(architecture)).parameters.values()
    defaults = {p.name: list(p.default) if isinstance(p.default, tuple) else p.default for p in params
                if p.default is not p.empty and isinstance(p.default, (bool, int, float, str, tuple, type(None)))}
    return {**defaults, **arguments}


#: reader options of a data card that decide the intensities a file is read as (DICOM ``voi``: the file's window,
#: stored values or a given window; ``color``: luminance or RGB); recorded in the spec's ``input.reader_options``
READER_INPUT_OPTIONS = ("voi", "color")


def reader_note(export: str | Path, card) -> list[str]:
    """``[note]`` when ``card`` (a :class:`~medssl.data.card.DataCard`) reads intensities with other
    :data:`READER_INPUT_OPTIONS` than the card the export's encoder pretrained on (defaults filled in on both
    sides); ``[]`` when they agree or the export predates ``input.reader_options``."""
    from medssl.io.dicom import read_dicom
    from medssl.io.read import reader_options

    was = read_spec(export).get("input", {}).get("reader_options")
    if not isinstance(was, dict):
        return []
    defaults = {k: reader_options(read_dicom)[k].default for k in READER_INPUT_OPTIONS}  # read_png's color alike
    was = {**defaults, **was}
    now = {**defaults, **{k: v for k, v in card.reader_options.items() if k in READER_INPUT_OPTIONS}}
    if was == now:
        return []
    return [f"The encoder pretrained on scans read with reader options {was}; card {card.name} reads its files with "
            f"{now}, so their intensities may differ from pretraining (the card's reader_options set them)."]


def pixels_2d_spec() -> dict:
    """How medssl's 2D readers turn a stored image into the array the ``input`` preprocessing starts from
    (``input.pixels`` of a 2D export), for users without medssl: ``layout: transpose``: channels first, then the
    stored pixel array transposed (``array[c, i, j] = stored[j, i]``, where PIL's ``np.asarray(image)``, a MedMNIST
    ``.npz`` image and pydicom's ``pixel_array`` are (rows, columns)); ``divisor_by_bits``: PNG / JPEG / MedMNIST
    values are divided by it per bit depth (→ [0, 1]; a DICOM is windowed by ``reader_options.voi`` instead);
    ``rgb_to_luminance``: the (R, G, B) weights that turn a colour PNG / JPEG into one channel (``color: luminance``,
    the default)."""
    from medssl.io.png import _FULL_SCALE, LUMA_WEIGHTS

    return {"layout": "transpose", "divisor_by_bits": {"1": _FULL_SCALE["1"], "8": _FULL_SCALE["L"],
                                                       "16": _FULL_SCALE["I;16"]},
            "rgb_to_luminance": list(LUMA_WEIGHTS)}


def input_spec_from_config(cfg) -> dict:
    """Input geometry and intensity preprocessing of a run (from its config and data card).

    ``spacing_mm`` is the voxel size the scans were resampled to (None: each scan's own grid); a DICOM without
    PixelSpacing / ImagerPixelSpacing was read as 1 mm pixels. ``reader_options`` holds the card's
    :data:`READER_INPUT_OPTIONS` ({}: the readers' defaults, e.g. DICOM ``voi="auto"``). A 2D run's ``pixels``
    says how the reader turns a stored image into its array (:func:`pixels_2d_spec`)."""
    from medssl.config import ConfigError
    from medssl.data.card import load_card
    from medssl.data.prepare import make_preprocessor

    d = cfg.data
    spec = {"spatial_dims": cfg.encoder.spatial_dims, "in_channels": cfg.encoder.in_channels,
            "shape": list(d.shape), "crop_size": list(cfg.augment.crop_size),
            "spacing_mm": list(d.spacing) or None, "normalise": d.normalise, "augment_preset": cfg.augment.preset}
    if cfg.encoder.spatial_dims == 2:
        spec["pixels"] = pixels_2d_spec()
    try:  # the card gives modality, orientation and name; a card that moved away is not fatal
        card = load_card(d.card)
        pre = make_preprocessor(card, d.shape, d.spacing, d.normalise)
        spec.update(orientation=pre.orientation or "file", modality=card.modality, data_card=card.name,
                    reader_options={k: v for k, v in card.reader_options.items() if k in READER_INPUT_OPTIONS})
    except (ConfigError, OSError):
        spec.update(data_card=Path(str(d.card)).stem)  # the name only, never the card's path
    return spec


def export_run(run_dir: str | Path, out_dir: str | Path, checkpoint: str | Path | None = None) -> Path:
    """Export the encoder of a pretraining run (latest ``checkpoints/step-*.pt`` by default).

    Raises:
        FileNotFoundError: no ``config.yaml`` or no checkpoint in the run.
        CheckpointError: the checkpoint cannot be read safely or does not fit the config.
        ExportError: ``out_dir`` is a file.
    """
    from medssl.api import build_method
    from medssl.config import config_hash, load_config, to_dict
    from medssl.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
    from medssl.train.trainer import check_compatible

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yaml; pass a run directory written by `medssl pretrain`")
    cfg = load_config(run_dir / "config.yaml", for_training=False)  # a trained run's, as it was
    if checkpoint is None:
        found = list_checkpoints(run_dir / "checkpoints")
        if not found:
            raise FileNotFoundError(f"{run_dir}/checkpoints holds no step-*.pt checkpoint; run `medssl pretrain` first")
        checkpoint = found[-1]
    state = load_checkpoint(checkpoint)
    check_compatible(state, to_dict(cfg), str(checkpoint),  # the exported spec describes cfg: they must agree
                     f"It is not a checkpoint of {run_dir}: export it from the run directory that wrote it")
    method = build_method(cfg)
    try:
        method.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{checkpoint}: weights do not fit the run's config ({e})") from None
    pretraining = {"method": cfg.method.name, "method_options": dict(cfg.method.options),
                   "loss": dict(cfg.method.loss), "config_hash": config_hash(cfg),
                   "checkpoint_step": int(state.get("step", -1)), "seed": cfg.seed}
    arguments = {"spatial_dims": cfg.encoder.spatial_dims, "in_channels": cfg.encoder.in_channels,
                 **cfg.encoder.options}
    input_spec = input_spec_from_config(cfg)
    if getattr(method, "input_rescaling", ""):  # e.g. Models Genesis rescales each scan to [0, 1]
        input_spec["method_rescaling"] = method.input_rescaling
    return save_encoder(method.encoder, out_dir, cfg.encoder.name, arguments, input_spec, pretraining,
                        evaluation={"targets": list(cfg.eval.targets)})  # what `evaluate RUN` uses by default


def read_spec(path: str | Path) -> dict:
    """The JSON spec of an export folder (or of the ``encoder.json`` file itself)."""
    path = Path(path)
    spec_path = path / SPEC_FILE if path.is_dir() else path
    if not spec_path.is_file():
        run = path.is_dir() and (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()
        raise ExportError(f"{spec_path} not found; pass a folder written by `medssl export`" + (
            f" ({path} is a run directory: export it first, `medssl export {path} --out DIR` or "
            "medssl.export.export_run(RUN, DIR); medssl.api.load_run_encoder(RUN) returns a run's encoder)" if run else ""))
    try:
        spec = json.loads(spec_path.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"{spec_path} is not valid JSON ({e})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ExportError(f"{spec_path} is not a medssl encoder spec (format {FORMAT!r} expected)")
    version = spec.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ExportError(f"{spec_path}: 'format_version' must be an integer, got {version!r}; export the encoder again")
    if version > FORMAT_VERSION:
        raise ExportError(f"{spec_path} has format_version {spec['format_version']}; this medssl reads up to "
                          f"{FORMAT_VERSION}. Upgrade medssl")
    _check_entries(spec, spec_path)
    return spec


def _check_entries(spec: dict, spec_path: Path) -> None:
    """The entries :func:`load_encoder` needs, with their types (an edited or truncated spec is named)."""
    weights = spec.get("weights")
    if not isinstance(weights, dict):
        raise ExportError(f"{spec_path} has no 'weights' entry ({{'file', 'sha256'}}); export the encoder again")
    for key in ("file", "sha256"):
        if not isinstance(weights.get(key), str):
            raise ExportError(f"{spec_path} has no 'weights.{key}' string; export the encoder again")
    if Path(weights["file"]).name != weights["file"] or weights["file"] in ("", ".", ".."):
        raise ExportError(f"{spec_path}: 'weights.file' must be a plain file name in the export folder, got "
                          f"{weights['file']!r}")
    if not isinstance(spec.get("architecture"), str):
        raise ExportError(f"{spec_path} has no 'architecture' (registry name, e.g. 'resnet18'); export the encoder again")
    if not isinstance(spec.get("arguments"), dict):
        raise ExportError(f"{spec_path}: 'arguments' must be a mapping of encoder arguments, got "
                          f"{type(spec.get('arguments')).__name__}")
    targets = spec.get("evaluation", {"targets": []})
    targets = targets.get("targets") if isinstance(targets, dict) else None
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets) \
            or set(targets) - set(EVAL_TARGETS):
        raise ExportError(f"{spec_path}: 'evaluation' must be {{'targets': [names among {list(EVAL_TARGETS)}]}}, got "
                          f"{spec.get('evaluation')!r}; correct it or export the encoder again")
    if not isinstance(spec.get("input", {}), dict):
        raise ExportError(f"{spec_path}: 'input' must be a mapping (shape, spacing_mm, normalise, …), got "
                          f"{type(spec['input']).__name__}; export the encoder again")


def load_encoder(path: str | Path, **overrides) -> nn.Module:
    """Rebuild an exported encoder and load its weights strictly; returned in eval mode.

    Args:
        path: export folder (or its ``encoder.json``).
        overrides: encoder arguments to change, e.g. ``checkpointing=True`` for fine-tuning.

    Raises:
        ExportError: missing/corrupt files (checksum mismatch), an architecture or argument this medssl does not
            have (an export of another version; the message names encoder.json), an override the encoder does not
            take, or weights that do not fit.
    """
    import inspect

    from medssl import __version__
    from medssl.encoders import build_encoder
    from medssl.registry import ENCODERS, _load_all

    _load_all()
    spec = read_spec(path)
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    weights = folder / spec["weights"]["file"]
    if not weights.is_file():
        raise ExportError(f"{weights} not found (named in {folder / SPEC_FILE})")
    if _sha256(weights) != spec["weights"]["sha256"]:
        raise ExportError(f"{weights} does not match the SHA-256 in {folder / SPEC_FILE}; the file is corrupt or "
                          "was replaced. Export again")
    spec_path, arch = folder / SPEC_FILE, spec["architecture"]
    if arch not in ENCODERS:
        raise ExportError(f"{spec_path} names architecture {arch!r}, which this medssl ({__version__}) does not have "
                          f"(exported by medssl {spec.get('medssl_version', '?')}; registered: {ENCODERS.list()}). "
                          "Upgrade medssl, or export the encoder again with this version")
    takes = inspect.signature(ENCODERS.get(arch)).parameters
    unknown = sorted(k for k in spec["arguments"] if k not in takes)
    if unknown:  # written by another medssl version, or edited by hand
        raise ExportError(f"{spec_path}: {arch} in this medssl ({__version__}) takes no argument(s) {unknown} (exported "
                          f"by medssl {spec.get('medssl_version', '?')}; it takes {sorted(takes)}). Use the medssl "
                          "version that wrote the export, or export the encoder again")

    def build() -> nn.Module:
        try:
            return build_encoder(arch, **{**spec["arguments"], **overrides})
        except (TypeError, ValueError, RuntimeError) as e:  # ValueError / RuntimeError: a value the network refuses
            if isinstance(e, TypeError) and set(overrides) - set(takes):
                raise ExportError(f"{arch} does not take the override(s) {sorted(set(overrides) - set(takes))} ({e}); "
                                  f"its arguments in this export: {sorted(spec['arguments'])}") from None
            raise ExportError(f"{spec_path}: {arch} cannot be built from its arguments {spec['arguments']} with "
                              f"overrides {overrides} ({str(e)[:300]}); check their values") from None

    with torch.device("meta"):  # the spec sizes the network: compared with the weights before any memory is taken
        _check_fits(build(), weights, f"{arch}({spec['arguments']}) as {spec_path} describes it"
                                      + (f", with overrides {overrides}" if overrides else ""))
    encoder = build()
    plain = encoder.plain_module() if hasattr(encoder, "plain_module") else encoder
    try:
        plain.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as e:
        raise ExportError(f"{weights} does not fit {spec['architecture']}({spec['arguments']}): {e}") from None
    return encoder.eval()


def _check_fits(skeleton: nn.Module, weights: Path, what: str) -> None:
    """Refuse ``weights`` whose tensor names or shapes (read from the safetensors header only) differ from those
    of ``skeleton`` (an encoder built on the meta device), naming the first differences.

    An export is untrusted input: its spec's arguments (width, image size) decide how much memory the encoder
    takes, so they are checked against the weights file before the encoder is built for real."""
    plain = skeleton.plain_module() if hasattr(skeleton, "plain_module") else skeleton
    expected = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    try:
        with safe_open(str(weights), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except SafetensorError as e:
        raise ExportError(f"{weights} is not a readable safetensors file ({e}); export the encoder again") from None
    if stored == expected:
        return
    diffs = ([f"{k}: {list(stored[k])} in the file, {list(expected[k])} in {what.split('(')[0]}"
              for k in expected if k in stored and stored[k] != expected[k]]
             + [f"{k} missing from the file" for k in expected if k not in stored]
             + [f"{k} not in {what.split('(')[0]}" for k in stored if k not in expected])
    raise ExportError(f"{weights} does not fit {what}: {len(diffs)} tensor(s) differ, e.g. {'; '.join(diffs[:3])}")


__all__ = ["ExportError", "encoder_state_dict", "export_run", "input_spec_from_config", "load_encoder", "read_spec",
           "reader_note", "save_encoder"]
