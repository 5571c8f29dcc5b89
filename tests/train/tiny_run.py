"""A tiny, fully deterministic pretraining run used by the trainer tests in subprocesses.

    python tests/train/tiny_run.py RUN_DIR --epochs 3 [--checkpoint-every 1] [--resume auto]
        [--params OUT.pt] [--sleep 0.0] [--nan-after-step N --checkpoint-epochs K] [--num-workers W]
        [--nan-loss-at RANK:STEP] [--draws OUT.pt]

``--nan-after-step N`` puts NaN into a weight after step N (a finite loss up to then) and adds
a monitor on rank 0 that reports a better ``best_metric`` every epoch. ``--nan-loss-at R:S`` makes
the loss of rank R NaN at step S (only there: a per-rank loss failing on one process). ``--draws OUT.pt``
records, per step, one draw from torch's global RNG (what dropout uses) and saves them as ``OUT.pt.rank<R>``.

Under torchrun-style env vars (RANK, WORLD_SIZE, MASTER_ADDR/PORT) it trains with DDP (gloo).
The encoder has no BatchNorm (SyncBatchNorm needs a GPU), and the view pipeline is the
deterministic "none" preset at full size, so N processes must equal 1 process exactly.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from medssl.losses import YAwareLoss
from medssl.methods import ContrastiveMethod
from medssl.train.distributed import init_distributed, shutdown_distributed
from medssl.train.trainer import Trainer, TrainerOptions
from medssl.transforms.views import build_view_pipeline


class TinyEncoder(nn.Module):
    spatial_dims, in_channels, out_dim = 3, 1, 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 8)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean(dim=(2, 3, 4)))


class Items(torch.utils.data.Dataset):
    def __init__(self, n: int = 32) -> None:
        self.x = torch.randn(n, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "age": torch.tensor(20.0 + 2 * i), "site": torch.tensor(i % 3), "index": torch.tensor(i)}


class SlowMethod(ContrastiveMethod):
    """Sleeps after each step so a test can kill the process mid-run."""

    sleep = 0.0
    nan_after_step = 0
    nan_loss_at = (-1, 0)  # (rank, step)
    rank, step = 0, 0
    draws = None  # a list when --draws is given

    def forward(self, batch, generator):
        out = super().forward(batch, generator)
        out.logs["image_mean"] = batch["image"].mean()  # a per-rank term (as MAE's loss is): this rank's scans only
        if self.draws is not None:
            self.draws.append(torch.rand(4))  # as a dropout mask is drawn (global RNG, no generator)
        if (self.rank, self.step + 1) == self.nan_loss_at:
            out.loss = out.loss * float("nan")
        return out

    def on_step_end(self, step: int, total: int) -> None:
        self.step = step
        time.sleep(self.sleep)
        if step == self.nan_after_step:
            with torch.no_grad():
                self.encoder.fc.bias[0] = float("nan")


def build(run_dir: str, epochs: int, checkpoint_every: int = 0, sleep: float = 0.0, nan_after_step: int = 0,
          checkpoint_epochs: int = 1, num_workers: int = 0, nan_loss_at: str = "") -> Trainer:
    torch.manual_seed(0)
    views = build_view_pipeline("none", 3, (8, 8, 8))
    method = SlowMethod(TinyEncoder(), YAwareLoss(temperature=0.5, sigma=5.0), views, proj_hidden_dim=16, proj_dim=8,
                        label_keys=["age"], continuous=True)
    method.sleep, method.nan_after_step = sleep, nan_after_step
    method.projector = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))  # BN-free (see module doc)
    info, device = init_distributed(torch.device("cpu"))
    method.rank = info.rank
    if nan_loss_at:
        method.nan_loss_at = tuple(int(v) for v in nan_loss_at.split(":"))
    opts = TrainerOptions(epochs=epochs, batch_size=8, lr=1e-2, optimizer="sgd", progress=False, log_every=1,
                          checkpoint_every=checkpoint_every, keep_checkpoints=3, checkpoint_epochs=checkpoint_epochs,
                          monitor_every=1 if nan_after_step else 0, num_workers=num_workers)
    better_each_epoch = iter(range(100, 0, -1))
    monitor = (lambda encoder: {"best_metric": float(next(better_each_epoch))}) if nan_after_step and info.is_main \
        else None
    return Trainer(method, Items(), run_dir, opts, device, config={"encoder": "tiny"}, dist_info=info, monitor=monitor)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--resume", default="")
    ap.add_argument("--params", default="")
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--nan-after-step", type=int, default=0)
    ap.add_argument("--checkpoint-epochs", type=int, default=1)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--nan-loss-at", default="")
    ap.add_argument("--draws", default="")
    a = ap.parse_args()
    t = build(a.run_dir, a.epochs, a.checkpoint_every, a.sleep, a.nan_after_step, a.checkpoint_epochs, a.num_workers,
              a.nan_loss_at)
    t.resume(a.resume)
    if a.draws:
        t.method.draws = []
    summary = t.fit()
    if a.draws:
        torch.save(torch.stack(t.method.draws), f"{a.draws}.rank{t.dist.rank}")
    if a.params and t.dist.is_main:
        torch.save({k: v.detach().clone() for k, v in t.method.state_dict().items()}, a.params)
    print("summary", summary, flush=True)
    shutdown_distributed(t.dist)  # as medssl.api.pretrain ends


if __name__ == "__main__":
    main()
