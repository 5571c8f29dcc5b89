"""Checks of a :class:`~medssl.config.RunConfig` that types alone cannot express: ranges, registry
names, constructor options, the loss against its method, the augmentation preset and overrides,
evaluation targets. :func:`~medssl.config.load_config` runs :func:`validate` on every config it builds.
"""

from __future__ import annotations

import inspect
import math
import os
import typing
from typing import Any

from medssl.config import EVAL_TARGETS, ConfigError, MethodConfig, RunConfig, _did_you_mean, parse_override


def _check_options(key: str, options: dict, factory: Any, skip: typing.Iterable[str] = ()) -> None:
    """Check that every option is a keyword argument of ``factory``."""
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if n not in ("self", *skip) and p.kind is not p.VAR_POSITIONAL]
    for name in options:
        if name not in valid:
            hint = (f" (YAML reads {{{name}}} as one key: write a space after the colon, e.g. "
                    f"{{{name.split(':')[0]}: {name.split(':', 1)[1]}}})") if ":" in str(name) else ""
            raise ConfigError(f"unknown option {key}.{name}{hint}.{_did_you_mean(name, valid)} "
                              f"Valid options: {', '.join(valid)}")


def validate(cfg: RunConfig, for_training: bool = True) -> None:
    """Value checks that types alone cannot express (ranges, registry names, option names). ``for_training``
    adds the refusals of settings a method would ignore or learn nothing from (a run trained before they
    existed stays readable for evaluation and export)."""
    from medssl.registry import ENCODERS, LOSSES, METHODS, _load_all

    _load_all()
    d, t = cfg.data, cfg.train
    if cfg.encoder.spatial_dims not in (2, 3):
        raise ConfigError(f"encoder.spatial_dims must be 2 or 3, got {cfg.encoder.spatial_dims}")
    for key, shape in (("data.shape", d.shape), ("augment.crop_size", cfg.augment.crop_size)):
        if len(shape) != cfg.encoder.spatial_dims or min(shape) < 1:
            other = len(shape) in (2, 3) and len(shape) != cfg.encoder.spatial_dims
            raise ConfigError(f"{key} must list {cfg.encoder.spatial_dims} positive sizes, got {shape}" +
                              (f" (encoder.spatial_dims is {cfg.encoder.spatial_dims}; for {len(shape)}D images set "
                               f"encoder.spatial_dims={len(shape)} and give data.shape and augment.crop_size "
                               f"{len(shape)} values each)" if other else ""))
    if d.spacing and (len(d.spacing) != cfg.encoder.spatial_dims or min(d.spacing) <= 0):
        raise ConfigError(f"data.spacing must be [] or {cfg.encoder.spatial_dims} positive values in mm, got {d.spacing}")
    if any(c > s for c, s in zip(cfg.augment.crop_size, d.shape)):
        raise ConfigError(f"augment.crop_size {cfg.augment.crop_size} is larger than data.shape {d.shape}")
    if not 0.0 < d.test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction must be in (0, 1), got {d.test_fraction}")
    for key, value in (("train.epochs", t.epochs), ("train.batch_size", t.batch_size), ("method.n_views", cfg.method.n_views),
                       ("train.grad_accum_steps", t.grad_accum_steps), ("train.keep_checkpoints", t.keep_checkpoints),
                       ("train.checkpoint_epochs", t.checkpoint_epochs)):
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    for key, value in (("train.checkpoint_every", t.checkpoint_every), ("train.monitor_every", t.monitor_every),
                       ("data.num_workers", d.num_workers), ("data.limit", d.limit)):
        if value < 0:
            raise ConfigError(f"{key} must be >= 0 (0: off), got {value}")
    for key, value in (("eval.batch_size", cfg.eval.batch_size), ("encoder.in_channels", cfg.encoder.in_channels),
                       ("method.proj_dim", cfg.method.proj_dim), ("method.proj_hidden_dim", cfg.method.proj_hidden_dim)):
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    # a negative final_lr_fraction makes the last steps' lr negative; the others would be silently "off"
    for key, value in (("train.final_lr_fraction", t.final_lr_fraction), ("train.warmup_epochs", t.warmup_epochs),
                       ("train.weight_decay", t.weight_decay), ("train.momentum", t.momentum),
                       ("train.grad_clip", t.grad_clip), ("method.fairkl_weight", cfg.method.fairkl_weight)):
        if value < 0 and for_training:  # a run trained with one before stays readable for evaluate / export
            raise ConfigError(f"{key} must be >= 0, got {value}")
    if t.batch_size < 2:
        raise ConfigError(f"train.batch_size must be >= 2 (a contrastive batch needs pairs; BatchNorm needs more than "
                          f"one sample), got {t.batch_size}")
    if t.lr <= 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise ConfigError(f"train.device {t.device!r} is not valid. Valid choices: auto, cpu, cuda, cuda:N")
    for key, reg, name in (("encoder.name", ENCODERS, cfg.encoder.name), ("method.name", METHODS, cfg.method.name)):
        if name not in reg:
            raise ConfigError(f"{key}: {reg.unknown_message(name)}")
    _check_options("encoder.options", cfg.encoder.options, ENCODERS.get(cfg.encoder.name), ("spatial_dims", "in_channels"))
    _check_patch_grid(cfg, ENCODERS.get(cfg.encoder.name), METHODS.get(cfg.method.name))
    check_targets("eval.targets", cfg.eval.targets)
    _validate_views(cfg)
    method = METHODS.get(cfg.method.name)
    if cfg.method.label_column and method.uses != "class":
        users = ", ".join(n for n in METHODS.list() if METHODS.get(n).uses == "class")
        raise ConfigError(f"method.label_column={cfg.method.label_column!r} is used only by methods that learn from "
                          f"class labels ({users}); {cfg.method.name} would ignore it: remove it")
    if not getattr(method, "default_loss", ""):  # non-contrastive (generative) methods take options instead of a loss
        for key, value in (("method.loss", cfg.method.loss), ("method.fairkl_weight", cfg.method.fairkl_weight)):
            if value and for_training:
                raise ConfigError(f"{key}: {cfg.method.name} has no contrastive loss and would ignore it; remove it "
                                  "(its options go in method.options)")
        if "views" in cfg.method.options:
            raise ConfigError("method.options.views: views are built from the augment section "
                              "(augment.preset, augment.crop_size, augment.overrides); remove method.options.views")
        _check_options("method.options", cfg.method.options, method, ("encoder", "views"))
        return
    if cfg.method.options:
        raise ConfigError(f"method.options is for generative methods; {cfg.method.name} is configured with method.loss")
    loss_name = cfg.method.loss.get("name", method.default_loss)
    if loss_name not in LOSSES:
        raise ConfigError(f"method.loss.name: {LOSSES.unknown_message(loss_name)}")
    _check_options("method.loss", {k: v for k, v in cfg.method.loss.items() if k != "name"}, LOSSES.get(loss_name))
    _check_loss_fits(cfg.method, method, loss_name, for_training)
    if not for_training:
        return
    try:  # the loss's own value checks (temperature, sigma, kernel, …) now, not after the data are prepared
        LOSSES.get(loss_name)(**{k: v for k, v in cfg.method.loss.items() if k != "name"})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"method.loss: {e}") from None
    label_free = method.uses == "none" or method.uses == "class" and not cfg.method.label_column or loss_name == "ntxent"
    if label_free and cfg.method.n_views < 2:  # no positive anywhere: loss 0 and zero gradient at every step
        raise ConfigError(f"method.n_views={cfg.method.n_views}: the only positives are the other views of each sample "
                          f"({cfg.method.name} with loss {loss_name} and no labels), so with one view the loss is 0 and "
                          "nothing is learnt. Use method.n_views=2 (or more)")
    m = cfg.method
    if m.fairkl_weight > 0 and method.uses == "class" and m.label_column == m.bias_column:
        raise ConfigError(f"method.bias_column={m.bias_column!r} is also method.label_column: FairKL compares same-label "
                          "pairs across bias groups, which then never differ, so the term is 0. Use another bias column "
                          "(e.g. site), or method.fairkl_weight=0")


def _check_patch_grid(cfg: RunConfig, factory: Any, method: Any) -> None:
    """A ViT (an encoder with a ``patch_size``) embeds views of ``augment.crop_size`` in pretraining and whole
    scans of ``data.shape`` in the online monitor and ``medssl evaluate``: both must be multiples of the patch
    size, said now rather than after pretraining. A method with ``norm_pix_loss`` (MAE) on, the default, needs
    patches of more than one value (their variance normalises the targets)."""
    param = inspect.signature(factory).parameters.get("patch_size")
    if param is None:
        return
    nd, patch = cfg.encoder.spatial_dims, cfg.encoder.options.get("patch_size", param.default)
    ps = [int(patch)] * nd if isinstance(patch, int) else [int(p) for p in patch]
    if len(ps) != nd:
        return  # the encoder refuses it with its own message
    norm = inspect.signature(method).parameters.get("norm_pix_loss")
    if norm is not None and cfg.method.options.get("norm_pix_loss", norm.default) and \
            math.prod(ps) * cfg.encoder.in_channels < 2:
        from medssl.methods.mae import one_value_patch_message

        raise ConfigError(one_value_patch_message(ps, cfg.encoder.in_channels))
    for key, shape, up in (("data.shape", cfg.data.shape, True), ("augment.crop_size", cfg.augment.crop_size, False)):
        if any(s % p for s, p in zip(shape, ps)):
            fit = [-(-s // p) * p if up else max(p, s // p * p) for s, p in zip(shape, ps)]
            raise ConfigError(f"{key}={list(shape)} is not a multiple of the ViT's patch_size {ps} (encoder.options."
                              f"patch_size); {cfg.encoder.name} cuts its input into whole patches. Use e.g. "
                              f"{key}={fit}")


def _check_loss_fits(m: MethodConfig, method: type, loss_name: str, for_training: bool = True) -> None:
    """A kernel loss (y-aware, L^thr, L^exp) needs a method that passes continuous metadata, and such a method
    needs a kernel loss: otherwise the loss is silently NT-Xent, or the ages are ignored."""
    from medssl.registry import LOSSES

    def kernel(name: str) -> bool:
        return getattr(LOSSES.get(name), "kernel_on_metadata", False)

    wants = method.uses == "metadata"
    if wants and not m.metadata and for_training:  # the loss would get labels=None: identity weights, i.e. NT-Xent
        raise ConfigError(f"method.metadata is empty: {m.name} weights positives by a kernel on it, and without it "
                          "the loss would silently be NT-Xent. Set e.g. method.metadata=[age], or use "
                          "method.name=simclr")
    sigma = m.loss.get("sigma")
    if wants and isinstance(sigma, (list, tuple)) and len(sigma) != len(m.metadata):
        raise ConfigError(f"method.loss.sigma={list(sigma)} has {len(sigma)} bandwidths but method.metadata="
                          f"{list(m.metadata)} has {len(m.metadata)} column(s): give one bandwidth per column, in "
                          "its units and order (e.g. years for age), or a single number")
    if kernel(loss_name) == wants:
        return
    fits = ", ".join(sorted(n for n in LOSSES.list() if n != "fairkl" and kernel(n) == wants))
    why = (f"{loss_name} weights positives by a kernel on metadata, which {m.name} does not pass (the loss would "
           "silently be NT-Xent); use method.name=yaware or contrastive_regression" if not wants else
           f"{m.name} passes method.metadata={m.metadata} (continuous), which {loss_name} does not use")
    raise ConfigError(f"method.loss.name={loss_name} does not fit method.name={m.name}: {why}. "
                      f"Losses that fit {m.name}: {fits}")


def view_spacing(cfg: RunConfig) -> list[float] | None:
    """The ``spacing`` argument of ``build_view_pipeline``: ``data.spacing`` (mm) when
    ``augment.physical_units`` is on, else None (strengths in voxels).

    Raises:
        ConfigError: ``augment.physical_units`` is on but ``data.spacing`` is [] (native
            spacing, which may differ from scan to scan).
    """
    if not cfg.augment.physical_units:
        return None
    if not cfg.data.spacing:
        raise ConfigError("augment.physical_units=true needs data.spacing (the voxel size in mm the views are drawn "
                          "on); data.spacing is [] (each scan's native spacing). Set data.spacing=[...] or "
                          "augment.physical_units=false")
    return list(cfg.data.spacing)


def _validate_views(cfg: RunConfig) -> None:
    from medssl.transforms.presets import AugmentParamError
    from medssl.transforms.views import build_view_pipeline

    spacing = view_spacing(cfg)
    try:  # checks the preset name and every override key against the preset's parameters
        build_view_pipeline(preset=cfg.augment.preset, spatial_dims=cfg.encoder.spatial_dims,
                            crop_size=tuple(cfg.augment.crop_size), overrides=dict(cfg.augment.overrides),
                            spacing=spacing)
    except ValueError as e:  # a bad value set in augment.overrides is named by its key (presets are valid)
        overridden = isinstance(e, AugmentParamError) and e.param in cfg.augment.overrides
        raise ConfigError(f"{'augment.overrides.' + e.param if overridden else 'augment'}: {e}") from None


def check_targets(key: str, targets: typing.Iterable[str]) -> None:
    """Refuse target names outside :data:`EVAL_TARGETS` (``key`` names the setting in the message)."""
    bad_targets = set(targets) - set(EVAL_TARGETS)
    if bad_targets:
        raise ConfigError(f"{key}: {sorted(bad_targets)} not valid. Valid choices: {', '.join(EVAL_TARGETS)}")


def absolute_data_paths(cfg: RunConfig) -> None:
    """Make a card path (``data.card`` ending in ``.yaml``/``.yml``), ``data.root`` and ``data.cache_dir``
    absolute, in place, when they are relative (``$VARS`` and ``~`` expanded first), so that the run's
    ``config.yaml`` still finds them when ``evaluate``, ``export`` or a resume runs from another folder."""
    d = cfg.data
    for key in ("card", "root", "cache_dir"):
        value = getattr(d, key)
        expanded = os.path.expanduser(os.path.expandvars(value))
        if value and not os.path.isabs(expanded) and (key != "card" or os.path.splitext(value)[1] in (".yaml", ".yml")):
            setattr(d, key, os.path.abspath(expanded))


def refuse_other_run_folder(path: str | os.PathLike | None, cfg: RunConfig, overrides: typing.Sequence[str]) -> None:
    """Refuse to train from a run folder's own ``config.yaml`` (a file beside that run's ``checkpoints/``) whose
    ``output_dir`` names another folder, unless ``output_dir`` is given as an override. (``manifest.tsv`` alone is
    no mark: a prepared data folder has one too, and a config kept there is a recipe.)

    The folder was copied or moved (or ``output_dir`` is relative and the command runs from elsewhere): training
    would continue in, or start afresh at, the stored ``output_dir``, not in the folder the user named.
    """
    if path is None or any(parse_override(o)[0] == ["output_dir"] for o in overrides):  # as load_config reads it
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(os.path.join(folder, "checkpoints")):
        return  # a recipe, not a run's config
    if os.path.realpath(folder) == os.path.realpath(cfg.output_dir):
        return
    relative = "" if os.path.isabs(cfg.output_dir) else f" (= {os.path.abspath(cfg.output_dir)}, from the current folder)"
    gone = "" if os.path.exists(cfg.output_dir) else ", which does not exist"
    raise ConfigError(f"{path} is the config of the run folder {folder}, but its output_dir is {cfg.output_dir}{relative}"
                      f"{gone}: the run folder was copied or moved{' (or the command runs from another folder)' if relative else ''}."
                      f" Training would write into {cfg.output_dir}, not {folder}. Say "
                      f"which: output_dir={folder} to train in this folder, or output_dir={cfg.output_dir} to train "
                      "in the folder the config names")
