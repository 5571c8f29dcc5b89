"""Fine-tuning: a pretrained encoder + a new linear head, trained end to end (or partly).

Takes any encoder ``nn.Module`` (``(B, C, *S) → (B, D)``, attribute ``out_dim``), so it works
from a run (:func:`medssl.api.load_run_encoder`) or an export (``medssl.export.load_encoder``).
The encoder is deep-copied; the caller's module is never changed.

* ``mode="full"``: every encoder parameter is trained; ``"last"``: only the last
  ``last_blocks`` blocks (:func:`encoder_blocks`) — earlier blocks are frozen *and* kept in
  eval mode, so their BatchNorm statistics stay the pretrained ones; ``"head"``: the encoder is
  frozen (a linear probe trained by gradient descent).
* AdamW with separate learning rates for the encoder and the head (weight decay on every trained
  parameter, biases and norm layers included).
* Early stopping on the validation loss (``patience`` epochs); the best epoch's weights are kept.
* :func:`finetune_encoder_lrs`: one run per encoder learning rate of a grid, the best on validation kept.
* Head initialisation: ``head_init="random"`` (small Gaussian weights) or ``"probe"`` — LP-FT
  (Kumar et al., ICLR 2022): the linear probe is fitted on the frozen embeddings of the training
  rows first (:func:`medssl.eval.probe_head.fit_probe_head`, hyper-parameter chosen on the
  validation rows) and fine-tuning starts from it. The probe itself is then "epoch 0" of the
  history, so early stopping keeps it when no fine-tuning epoch improves the validation loss.
  The probe sees eval-mode embeddings (BatchNorm running statistics); training batches that look
  unlike them (other statistics, interpolating augmentation) move the features away from the probe.
* Optional training augmentation: a batch transform ``augment(x, generator)`` (e.g. a
  :class:`medssl.transforms.views.ViewPipeline` whose crop size is the input size) applied on
  the device to every training batch; validation and test images are never augmented.
* ``freeze_norm_stats=True``: every BatchNorm layer of the encoder normalises with its pretrained
  running statistics during training too, and never updates them (its scale and shift are still
  trained), as detectron2's ``FrozenBatchNorm2d`` does. Training batches are then normalised like
  the validation scans, which matters when batches are small (a few 3D scans) or augmented; by
  default (``False``) BatchNorm uses batch statistics while training, as in plain PyTorch.
* Tasks: ``"regression"`` (targets standardised with training mean/std, Huber loss, predictions
  back in target units, e.g. years), ``"classification"`` (cross-entropy, K classes coded
  0..K-1), ``"multilabel"`` ((N, K) 0/1 targets, e.g. chest X-ray findings; BCE-with-logits).

Randomness is explicit: the head initialisation and the batch order come from ``seed``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medssl.encoders.base import encoder_blocks  # mode="last" trains the last of these blocks
from medssl.train.optim import autocast_dtype
from medssl.train.trainer import resolve_device

TASKS = ("regression", "classification", "multilabel")
MODES = ("full", "last", "head")
HEAD_INITS = ("random", "probe")


@dataclass
class FinetuneOptions:
    """Settings of one fine-tuning run (learning rates per AdamW step; epochs are full passes)."""

    task: str = "regression"
    mode: str = "full"
    last_blocks: int = 1  #: trained blocks when mode="last"
    lr_encoder: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 30
    batch_size: int = 16
    patience: int = 5  #: epochs without validation-loss improvement before stopping
    device: str = "cpu"  #: "cpu", "cuda", "cuda:N" or "auto" (CUDA when visible); a missing GPU is a DeviceError
    seed: int = 0
    bf16: bool = True  #: bf16 autocast on a GPU with native bf16 (ignored on CPU, V100/T4: see autocast_dtype)
    num_workers: int = 0
    head_init: str = "random"  #: "random" or "probe" (LP-FT, module docstring)
    freeze_norm_stats: bool = False  #: BatchNorm keeps its pretrained running statistics (module docstring)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"fine-tuning task must be one of {TASKS}, got {self.task!r}")
        if self.mode not in MODES:
            raise ValueError(f"fine-tuning mode must be one of {MODES}, got {self.mode!r}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"fine-tuning head_init must be one of {HEAD_INITS}, got {self.head_init!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        for name in ("lr_encoder", "lr_head", "weight_decay"):  # AdamW checks only its default lr, not a group's
            if not getattr(self, name) >= 0:
                raise ValueError(f"fine-tuning {name} must be >= 0, got {getattr(self, name)}")


@dataclass
class FinetuneResult:
    model: nn.Module  #: encoder + head, best validation epoch, eval mode
    #: per epoch: epoch, train_loss, val_loss, val_metric (MAE, balanced accuracy over the training classes, or
    #: macro AUC); epoch 0: the probe (LP-FT)
    history: list[dict]
    best_epoch: int  #: 0: the probe-initialised model before any fine-tuning step was best
    options: FinetuneOptions
    target_mean: float = 0.0  #: regression target standardisation (training rows)
    target_std: float = 1.0
    n_trainable: int = 0  #: trained encoder parameters (elements)
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"best_epoch": self.best_epoch, "epochs_run": sum(h["epoch"] > 0 for h in self.history),
                "n_trainable_encoder": self.n_trainable, **self.extra,
                **{k: v for k, v in asdict(self.options).items() if k not in ("device", "num_workers")},
                "bf16": _uses_bf16(torch.device(self.options.device), self.options)}  # as used, not as asked


class EncoderWithHead(nn.Module):
    """``head(encoder(x))``: (B, C, *S) → (B, n_outputs)."""

    def __init__(self, encoder: nn.Module, n_outputs: int, generator: torch.Generator) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, n_outputs)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=generator) * 0.01)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class _Rows(Dataset):
    """(image, row) pairs; targets are looked up by row outside the dataset."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        return (item["image"] if isinstance(item, dict) else item[0]), i


def _frozen_blocks(encoder: nn.Module, opt: FinetuneOptions) -> list[nn.Module]:
    if opt.mode == "full":
        return []
    if opt.mode == "head":
        return [encoder]
    blocks = encoder_blocks(encoder)
    if not 1 <= opt.last_blocks <= len(blocks):
        raise ValueError(f"last_blocks={opt.last_blocks} but the encoder has {len(blocks)} blocks")
    return blocks[: len(blocks) - opt.last_blocks] + [m for m in encoder.children() if m is not getattr(encoder, "net", None)
                                                       and m not in blocks]


def _norm_layers(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's BatchNorm layers (1D/2D/3D and SyncBatchNorm)."""
    return [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _targets(y: np.ndarray, opt: FinetuneOptions, mean: float, std: float) -> torch.Tensor:
    if opt.task == "regression":
        return torch.as_tensor((np.asarray(y, float) - mean) / std, dtype=torch.float32)
    if opt.task == "classification":
        return torch.as_tensor(np.asarray(y), dtype=torch.long)
    return torch.as_tensor(np.asarray(y), dtype=torch.float32)


def _loss_fn(task: str) -> nn.Module:
    return {"regression": nn.HuberLoss(), "classification": nn.CrossEntropyLoss(),
            "multilabel": nn.BCEWithLogitsLoss()}[task]


def _uses_bf16(device: torch.device, opt: FinetuneOptions) -> bool:
    return autocast_dtype("auto" if opt.bf16 else "fp32", device) is not None  # the trainer's train.precision=auto


def _autocast(device: torch.device, opt: FinetuneOptions):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=_uses_bf16(device, opt))


@torch.no_grad()
def _outputs(model: nn.Module, dataset: Dataset, opt: FinetuneOptions, device: torch.device) -> torch.Tensor:
    model.eval()
    outs = []
    for image, _ in DataLoader(_Rows(dataset), batch_size=opt.batch_size, shuffle=False, num_workers=opt.num_workers):
        with _autocast(device, opt):
            outs.append(model(image.to(device)).float().cpu())
    return torch.cat(outs)


def finetune(encoder: nn.Module, train: Dataset, y_train: np.ndarray, val: Dataset, y_val: np.ndarray,
             options: FinetuneOptions | None = None, augment=None) -> FinetuneResult:
    """Train a copy of ``encoder`` with a new head on ``train``; early-stop on ``val``.

    Args:
        encoder: pretrained encoder with ``out_dim``.
        train, val: datasets of images (items ``{"image": (C, *S)}`` or ``(image, …)``).
        y_train, y_val: targets aligned with the datasets: (N,) floats (regression, e.g. years),
            (N,) int class codes 0..K-1, or (N, K) 0/1 (multilabel).
        options: :class:`FinetuneOptions`.
        augment: ``(x (B, C, *S), generator) → (B, C, *S)`` applied to training batches on the
            device (its generator is seeded from ``options.seed``); ``None``: no augmentation.

    Returns:
        :class:`FinetuneResult` with the best-validation model (eval mode) and the history.
    """
    opt = options or FinetuneOptions()
    device = resolve_device(opt.device, key="FinetuneOptions.device", fix="device='cpu' or 'auto'")
    opt = replace(opt, device=str(device))  # "auto" resolved, as recorded in the result
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    if len(y_train) != len(train) or len(y_val) != len(val):
        raise ValueError(f"targets ({len(y_train)}, {len(y_val)}) do not match the datasets ({len(train)}, {len(val)})")
    gen = torch.Generator().manual_seed(opt.seed)
    aug_gen = torch.Generator(device=device).manual_seed(opt.seed + 1) if augment is not None else None
    if opt.task == "regression":
        mean, std = float(y_train.mean()), float(y_train.std()) or 1.0
        n_out = 1
    else:
        mean, std = 0.0, 1.0
        n_out = int(max(y_train.max(), y_val.max())) + 1 if opt.task == "classification" else y_train.shape[1]
    classes = np.unique(y_train).astype(np.int64) if opt.task == "classification" else None  # val_metric's choices
    model = EncoderWithHead(copy.deepcopy(encoder), n_out, gen).to(device)
    t_train, t_val = _targets(y_train, opt, mean, std), _targets(y_val, opt, mean, std)
    extra = _init_head_from_probe(model, train, t_train, val, t_val, opt, device) if opt.head_init == "probe" else {}
    frozen = _frozen_blocks(model.encoder, opt)
    for block in frozen:
        block.requires_grad_(False)
    eval_mode = frozen + (_norm_layers(model.encoder) if opt.freeze_norm_stats else [])
    enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
    groups = [{"params": list(model.head.parameters()), "lr": opt.lr_head}]
    if enc_params:
        groups.append({"params": enc_params, "lr": opt.lr_encoder})
    optimizer = torch.optim.AdamW(groups, weight_decay=opt.weight_decay)
    loss_fn = _loss_fn(opt.task)
    history, best, best_state, best_epoch, bad = [], math.inf, None, 0, 0

    def validate(epoch: int, train_loss: float) -> bool:
        """Score the model on ``val``; keep it if best. Returns True when patience is used up."""
        nonlocal best, best_state, best_epoch, bad
        val_out = _outputs(model, val, opt, device)
        val_loss = float(loss_fn(val_out.squeeze(1) if opt.task == "regression" else val_out, t_val))
        if not math.isfinite(val_loss):
            raise FloatingPointError(f"fine-tuning: validation loss is {val_loss} at epoch {epoch}; lower lr_encoder/"
                                     f"lr_head (now {opt.lr_encoder}/{opt.lr_head})")
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "val_metric": _val_metric(val_out, y_val, opt, mean, std, classes)})
        if val_loss < best - 1e-12:
            best, bad, best_epoch = val_loss, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        bad += 1
        return bad >= opt.patience

    if opt.head_init == "probe":
        validate(0, math.nan)
    for epoch in range(1, opt.epochs + 1):
        model.train()
        for module in eval_mode:
            module.eval()
        total, seen = 0.0, 0
        loader = DataLoader(_Rows(train), batch_size=opt.batch_size, shuffle=True, generator=gen, drop_last=len(train) > opt.batch_size,
                            num_workers=opt.num_workers)
        for image, rows in loader:
            target = t_train[rows].to(device)
            image = image.to(device)
            if augment is not None:
                with torch.no_grad():
                    image = augment(image, aug_gen)
            with _autocast(device, opt):
                out = model(image).float()
            loss = loss_fn(out.squeeze(1) if opt.task == "regression" else out, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(rows), seen + len(rows)
        if validate(epoch, total / max(seen, 1)):
            break
    model.load_state_dict(best_state)
    model.eval()
    return FinetuneResult(model, history, best_epoch, opt, mean, std, sum(p.numel() for p in enc_params), extra)


def finetune_encoder_lrs(encoder: nn.Module, train: Dataset, y_train: np.ndarray, val: Dataset, y_val: np.ndarray,
                         lrs, options: FinetuneOptions | None = None, augment=None, criterion=None,
                         maximise: bool = False) -> tuple[FinetuneResult, dict[float, float]]:
    """:func:`finetune` once per encoder learning rate of ``lrs`` (same start weights and seed); keep the best run.

    Args:
        lrs: encoder learning rates (``options.lr_encoder`` is replaced by each).
        criterion: ``FinetuneResult → float`` scored on the validation rows only; default: the best
            validation loss of the run (``min`` over its history, epoch 0 included with LP-FT).
        maximise: True when a higher criterion is better (e.g. validation AUC).

    Returns:
        The kept run (its ``options.lr_encoder`` is the chosen lr; ties keep the earlier lr) and
        ``{lr: criterion}`` for every lr.
    """
    opt = options or FinetuneOptions()
    criterion = criterion or (lambda r: min(h["val_loss"] for h in r.history))
    best, scores = None, {}
    for lr in lrs:
        result = finetune(encoder, train, y_train, val, y_val, replace(opt, lr_encoder=float(lr)), augment)
        scores[float(lr)] = value = float(criterion(result))
        kept = None if best is None else scores[best.options.lr_encoder]
        if kept is None or (value > kept if maximise else value < kept):
            best = result
    if best is None:
        raise ValueError("finetune_encoder_lrs: lrs is empty")
    return best, scores


def _init_head_from_probe(model: EncoderWithHead, train: Dataset, t_train: torch.Tensor, val: Dataset,
                          t_val: torch.Tensor, opt: FinetuneOptions, device: torch.device) -> dict:
    """LP-FT: fit the linear probe on the frozen (eval-mode) embeddings and copy it into ``model.head``."""
    from medssl.eval.probe_head import fit_probe_head

    x, x_val = (_outputs(model.encoder, ds, opt, device).numpy() for ds in (train, val))
    w, b, info = fit_probe_head(x, t_train.numpy(), x_val, t_val.numpy(), opt.task, model.head.out_features)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(w))
        model.head.bias.copy_(torch.from_numpy(b))
    return {"probe_" + k: v for k, v in info.items()}


def _val_metric(out: torch.Tensor, y: np.ndarray, opt: FinetuneOptions, mean: float, std: float,
                classes: np.ndarray | None) -> float:
    """Validation MAE (target units), balanced accuracy of the argmax over ``classes`` (the training rows'
    codes, as the test report chooses; the other outputs were never trained towards) or macro AUC."""
    from medssl.eval import metrics as M

    if opt.task == "regression":
        return M.mae(y, out.squeeze(1).numpy() * std + mean)
    if opt.task == "classification":
        return M.balanced_accuracy(y, classes[out[:, classes].argmax(1).numpy()])
    return M.multilabel_metrics(y, torch.sigmoid(out).numpy())["auc_macro"]


def predict(result: FinetuneResult, dataset: Dataset) -> np.ndarray:
    """Predictions of a fine-tuned model: (N,) in target units (regression), (N, K) class
    probabilities (classification) or (N, K) per-label probabilities (multilabel)."""
    device = next(result.model.parameters()).device
    out = _outputs(result.model, dataset, result.options, device)
    if result.options.task == "regression":
        return out.squeeze(1).numpy() * result.target_std + result.target_mean
    if result.options.task == "classification":
        return torch.softmax(out, dim=1).numpy()
    return torch.sigmoid(out).numpy()


def finetune_and_score(encoder: nn.Module, train: Dataset, y_train: np.ndarray, val: Dataset, y_val: np.ndarray,
                       test: Dataset, y_test: np.ndarray, options: FinetuneOptions | None = None,
                       groups_test: np.ndarray | None = None, n_boot: int = 1000, class_names: list[str] | None = None,
                       augment=None) -> dict:
    """:func:`finetune`, then score once on ``test``.

    Returns:
        Regression: MAE, RMSE, R², Pearson r (+ ``_ci``); classification: as the linear probe
        (:func:`medssl.eval.probes.classification_probe`): balanced accuracy, F1, accuracy, AUC,
        chance (1/#training classes), ``classes`` and ``confusion`` (+ ``_ci``), the model choosing among
        the classes of ``y_train`` (the head's outputs for other codes, never trained towards, are left out and the
        others' probabilities renormalised); multilabel: macro and per-class AUC / F1 (+ ``auc_macro_ci``).
        Plus ``"history"``, ``"finetune"`` (settings, best epoch) and ``"pred"`` (class codes for classification).
    """
    from medssl.eval import metrics as M

    result = finetune(encoder, train, y_train, val, y_val, options, augment)
    pred = predict(result, test)
    y_test = np.asarray(y_test)
    seed = result.options.seed
    if result.options.task == "regression":
        out = M.with_ci(M.regression_metrics(y_test, pred), {"mae": M.mae, "rmse": M.rmse, "r2": M.r2}, y_test, pred,
                        n_boot=n_boot, seed=seed, groups=groups_test) if n_boot else M.regression_metrics(y_test, pred)
        out["pred"] = pred
    elif result.options.task == "classification":  # scored as the linear probe: over the training classes
        from medssl.eval.probes import classification_report

        classes = np.unique(np.asarray(y_train))  # a head output no training row has is no choice (never trained to)
        proba = pred[:, classes] / pred[:, classes].sum(1, keepdims=True)
        out = classification_report(y_test, classes[proba.argmax(1)], proba, classes, n_boot, seed, groups_test)
    else:
        out = M.multilabel_metrics(y_test, pred, names=class_names)
        if n_boot:
            out["auc_macro_ci"] = list(M.bootstrap_ci(lambda y, p: M.multilabel_metrics(y, p)["auc_macro"], y_test, pred,
                                                      n_boot=n_boot, seed=seed, groups=groups_test))
        out["pred"] = pred
    out["history"] = result.history
    out["finetune"] = result.summary()
    return out
