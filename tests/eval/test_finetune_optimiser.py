"""Fine-tuning's optimiser and initial head, against docs/evaluation.md and plain torch: weight decay 1e-4 on every
trained parameter, a small random head drawn from the run's seed."""

import pytest
import torch
from eval_helpers import make_tiny_encoder

from medssl.eval.finetune import FinetuneOptions, finetune


def test_adamw_decays_every_trained_parameter_by_the_documented_default(data, monkeypatch):
    """AdamW, weight decay 1e-4 (the default) on every trained parameter: the head and, in mode "full", every
    encoder parameter, biases and BatchNorm scales included."""
    tr, ytr, va, yva, *_ = data
    seen = {}
    original = torch.optim.AdamW.__init__

    def spy(self, groups, **kw):
        seen["groups"] = [{"params": list(g["params"]), **{k: v for k, v in g.items() if k != "params"}} for g in groups]
        seen["kw"] = kw
        original(self, seen["groups"], **kw)

    monkeypatch.setattr(torch.optim.AdamW, "__init__", spy)
    enc = make_tiny_encoder()
    res = finetune(enc, tr, ytr, va, yva, FinetuneOptions(epochs=1))
    assert FinetuneOptions().weight_decay == 1e-4 and seen["kw"].get("weight_decay") == 1e-4
    assert all(g.get("weight_decay", 1e-4) == 1e-4 for g in seen["groups"])
    trained = {id(p) for g in seen["groups"] for p in g["params"]}
    assert trained == {id(p) for p in res.model.parameters()}  # encoder (biases, BatchNorm) and head


@pytest.mark.parametrize("seed", [0, 5])
def test_the_initial_head_is_a_small_gaussian_drawn_from_the_runs_seed(data, seed):
    """With nothing trained (learning rates and decay 0) the kept head is the initial one: weights 0.01 · N(0, 1)
    from a generator seeded with ``seed`` (the first draw of the run), bias 0."""
    tr, ytr, va, yva, *_ = data
    res = finetune(make_tiny_encoder(), tr, ytr, va, yva,
                   FinetuneOptions(epochs=1, lr_encoder=0.0, lr_head=0.0, weight_decay=0.0, seed=seed))
    expected = torch.randn((1, 8), generator=torch.Generator().manual_seed(seed)) * 0.01
    torch.testing.assert_close(res.model.head.weight, expected, rtol=0, atol=0)
    assert torch.all(res.model.head.bias == 0)


def test_the_encoder_lr_grid_scores_each_run_by_its_best_epoch_not_its_last(data):
    """finetune_encoder_lrs' default criterion is the run's best validation loss (docs: "keeps the run with the
    best validation loss"): runs that early-stop after worse epochs are scored by their best one, as a run with
    that lr alone gives it."""
    from medssl.eval.finetune import finetune_encoder_lrs

    tr, ytr, va, yva, *_ = data
    enc, lrs = make_tiny_encoder(), (3e-1, 1e-2)
    opts = FinetuneOptions(epochs=6, patience=1, lr_head=3e-1, batch_size=8, seed=2)
    alone = {lr: finetune(enc, tr, ytr, va, yva, FinetuneOptions(**{**opts.__dict__, "lr_encoder": lr})) for lr in lrs}
    best_loss = {lr: min(h["val_loss"] for h in r.history) for lr, r in alone.items()}
    assert any(r.history[-1]["val_loss"] > best_loss[lr] for lr, r in alone.items())  # the case: a worse last epoch
    best, scores = finetune_encoder_lrs(enc, tr, ytr, va, yva, lrs, opts)
    assert scores == best_loss and best.options.lr_encoder == min(best_loss, key=best_loss.get)


@pytest.mark.parametrize("extra", [0, 1])
def test_last_mode_refuses_no_block_and_more_blocks_than_the_encoder_has(data, extra):
    """mode="last" trains 1 … #blocks blocks: --last-blocks 0 would quietly be mode "head" (nothing of the encoder
    trained) and #blocks + 1 would count blocks that do not exist; both stop with the encoder's block count."""
    from medssl.eval.finetune import encoder_blocks

    tr, ytr, va, yva, *_ = data
    enc = make_tiny_encoder()
    n = len(encoder_blocks(enc))
    bad = 0 if extra == 0 else n + 1
    with pytest.raises(ValueError, match=f"last_blocks={bad} but the encoder has {n} blocks"):
        finetune(enc, tr, ytr, va, yva, FinetuneOptions(mode="last", last_blocks=bad, epochs=1))
