"""The tiny in-process trainer shared by tests/train/test_trainer*.py."""

import sys
from pathlib import Path

import torch

from medssl.losses import NTXentLoss
from medssl.methods import ContrastiveMethod
from medssl.train.trainer import Trainer, TrainerOptions
from medssl.transforms.views import build_view_pipeline

sys.path.insert(0, str(Path(__file__).parent))
from tiny_run import TinyEncoder  # noqa: E402  (the tiny BN-free encoder shared with the subprocess tests)


class Items(torch.utils.data.Dataset):
    def __init__(self, n=24, poison=False):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, 12, 12, 12, generator=g)
        if poison:
            self.x[:] = float("nan")

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "age": torch.tensor(20.0 + i), "site": torch.tensor(i % 3), "index": torch.tensor(i)}


def _trainer(run_dir, epochs=3, config=None, poison=False, checkpoint_epochs=1, compile=False, encoder=TinyEncoder,
             batch_size=8, n=24, **options):
    torch.manual_seed(0)
    views = build_view_pipeline("brain_mri", 3, (10, 10, 10))
    method = ContrastiveMethod(encoder(), NTXentLoss(temperature=0.5), views, proj_hidden_dim=16, proj_dim=8)
    opts = TrainerOptions(epochs=epochs, batch_size=batch_size, lr=1e-2, progress=False, log_every=1, keep_checkpoints=100,
                          checkpoint_epochs=checkpoint_epochs, compile=compile, **options)
    return Trainer(method, Items(n, poison=poison), run_dir, opts, torch.device("cpu"), config=config or {"encoder": {"n": "tiny"}})


def _params(t):
    return torch.cat([p.detach().flatten() for p in t.method.parameters()])
