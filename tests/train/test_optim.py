"""The learning-rate schedule: linear warm-up, then cosine decay to final_fraction × lr."""

import math

import pytest
import torch

from medssl.train.optim import warmup_cosine


def _regression():
    """A small seeded MLP regressing age from an 8-vector, as a :class:`Method` (per-sample mean squared loss)."""
    from medssl.methods.base import Method, StepOutput

    class Regression(Method):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.encoder = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))

        def training_step(self, batch, generator):
            return StepOutput(((self.encoder(batch["image"]).squeeze(1) - batch["age"]) ** 2).mean())

    return Regression()


def _lrs(warmup, total, final_fraction):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched, lrs = warmup_cosine(opt, warmup, total, final_fraction), []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("final_fraction", [0.01, 0.2])
def test_warmup_then_cosine_matches_the_formula(final_fraction):
    warmup, total = 4, 24
    lrs = _lrs(warmup, total, final_fraction)
    assert lrs[:warmup] == pytest.approx([0.5 * (s + 1) / warmup for s in range(warmup)])
    for s in range(warmup, total):  # Loshchilov & Hutter (SGDR, ICLR 2017), eq. 5, one cycle
        t = (s - warmup) / (total - warmup)
        assert lrs[s] == pytest.approx(0.5 * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t))))
    assert min(lrs[warmup:]) > 0.5 * final_fraction


def test_final_fraction_one_keeps_the_lr_constant_after_warmup():
    lrs = _lrs(3, 20, 1.0)
    assert lrs[:3] == pytest.approx([0.5 / 3, 1.0 / 3, 0.5])
    assert lrs[3:] == pytest.approx([0.5] * 17)


def test_lars_matches_a_naive_reimplementation_and_leaves_biases_and_norms_unadapted_and_undecayed():
    """LARS (You et al. 2017) as in SimCLR / Barlow Twins: for ndim > 1, g ← g + wd·w, then
    g ← eta·||w||/||g|| · g; ndim ≤ 1 (biases, BatchNorm) take the plain gradient; then SGD momentum."""
    from medssl.train.optim import build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)).double()
    opt = build_optimizer(model, "lars", lr=0.3, weight_decay=0.05, momentum=0.9)
    ref, bufs, x = [p.detach().clone() for p in model.parameters()], {}, torch.randn(16, 5, dtype=torch.float64)
    for _ in range(4):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        for i, (w, p) in enumerate(zip(ref, model.parameters())):
            g = p.grad.clone()
            if w.ndim > 1:
                g = g + 0.05 * w
                g = g * (1e-3 * w.norm() / g.norm())
            bufs[i] = g if i not in bufs else 0.9 * bufs[i] + g
            w -= 0.3 * bufs[i]
        opt.step()
        for w, p in zip(ref, model.parameters()):
            assert torch.allclose(p, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("optimizer", "clip"), [("sgd", 0.0), ("lars", 0.0), ("adamw", 0.05)])
def test_two_accumulated_micro_batches_step_like_one_batch_of_twice_the_size(tmp_path, optimizer, clip):
    """train.grad_accum_steps=2 × B: the micro-batch losses are averaged (not summed), so with a per-sample
    mean loss, no BatchNorm (and a clipped global norm), each step equals one step on the 2B batch."""
    from medssl.train.trainer import Trainer, TrainerOptions

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 8, generator=g), torch.randn(16, generator=g)
    data = [{"image": x[i], "age": y[i]} for i in range(16)]

    def weights(batch_size, accum):
        opts = TrainerOptions(epochs=1, batch_size=batch_size, grad_accum_steps=accum, optimizer=optimizer, lr=0.1,
                              weight_decay=0.1, warmup_epochs=0, grad_clip=clip, progress=False)
        t = Trainer(_regression(), data, tmp_path / f"{batch_size}", opts, torch.device("cpu"))
        for start in range(0, 16, batch_size * accum):
            t._optimizer_step([{"image": x[i:i + batch_size], "age": y[i:i + batch_size]}
                               for i in range(start, start + batch_size * accum, batch_size)], torch.Generator())
        return torch.cat([p.detach().flatten() for p in t.method.parameters()])

    one, accumulated = weights(8, 1), weights(4, 2)
    assert not torch.allclose(one, weights(4, 1), atol=1e-4)  # the batch size matters here …
    assert torch.allclose(one, accumulated, atol=1e-6)  # … and accumulation recovers the big batch


@pytest.mark.parametrize(("capability", "expected"), [((7, 0), None), ((7, 5), None), ((8, 0), torch.bfloat16),
                                                      ((9, 0), torch.bfloat16)])
def test_auto_precision_is_bf16_only_on_gpus_with_native_bf16(monkeypatch, capability, expected):
    """train.precision=auto chose bf16 on every CUDA device; a V100 (7.0) or T4 (7.5) only emulates bf16 (no bf16
    tensor cores), so auto keeps fp32 there and bf16 from compute capability 8 (A100, H100/H200). Fine-tuning's
    bf16 default follows the same rule and records it. (No GPU here: the capability query is a stand-in.)"""
    from medssl.eval.finetune import FinetuneOptions, _uses_bf16
    from medssl.train.optim import autocast_dtype

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    gpu = torch.device("cuda", 0)
    assert autocast_dtype("auto", gpu) is expected
    assert autocast_dtype("bf16", gpu) is torch.bfloat16 and autocast_dtype("fp32", gpu) is None  # as asked
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert _uses_bf16(gpu, FinetuneOptions()) is (expected is not None)
    assert not _uses_bf16(gpu, FinetuneOptions(bf16=False)) and not _uses_bf16(torch.device("cpu"), FinetuneOptions())


def test_sgd_is_nesterov_with_decay_on_weights_only_as_a_naive_loop():
    """train.optimizer=sgd: Nesterov momentum (Sutskever et al. 2013, torch's form: b ← m·b + g, step g + m·b) with
    weight decay g ← g + wd·w on ndim > 1 tensors only; biases and BatchNorm parameters take the plain gradient."""
    from medssl.train.optim import build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)).double()
    opt = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.2, momentum=0.9)
    ref, bufs, x = [p.detach().clone() for p in model.parameters()], {}, torch.randn(16, 5, dtype=torch.float64)
    for _ in range(4):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        for i, (w, p) in enumerate(zip(ref, model.parameters())):
            g = p.grad + (0.2 * w if w.ndim > 1 else 0.0)
            bufs[i] = g.clone() if i not in bufs else 0.9 * bufs[i] + g
            w -= 0.1 * (g + 0.9 * bufs[i])
        opt.step()
        for w, p in zip(ref, model.parameters()):
            assert torch.allclose(p, w, rtol=1e-10, atol=1e-12)


def test_adamw_decays_weights_but_not_biases_or_norm_parameters():
    """With zero gradients AdamW's adaptive step is 0, so one step is its decoupled decay alone (Loshchilov &
    Hutter, ICLR 2019): w ← (1 - lr·wd)·w for weights; biases and BatchNorm scales/shifts stay as they are."""
    from medssl.train.optim import build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 2.0), model[1].bias.uniform_(-1.0, 1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, "adamw", lr=0.1, weight_decay=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        expected = before[name] * (1 - 0.1 * 0.5) if p.ndim > 1 else before[name]
        assert torch.allclose(p, expected, rtol=1e-6, atol=0), name


def test_grad_clip_scales_the_global_gradient_norm_down_to_the_limit(tmp_path):
    """train.grad_clip=c: one SGD step (no momentum) equals w - lr · min(1, c / ||g||) · g with ||g|| the norm of
    all gradients together, computed here by hand on a copy of the model; a limit above ||g|| changes nothing, nor does
    0 (off: not a limit of 0, which would zero every gradient)."""
    import copy

    from medssl.train.trainer import Trainer, TrainerOptions

    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(8, 8, generator=g), "age": 10 * torch.randn(8, generator=g)}
    data = [{"image": batch["image"][i], "age": batch["age"][i]} for i in range(8)]
    naive = _regression()
    naive.training_step(batch, None).loss.backward()
    grads = [p.grad.clone() for p in naive.parameters()]
    norm = torch.sqrt(sum((gr ** 2).sum() for gr in grads)).item()
    assert norm > 1.0  # the clip below acts
    for clip in (0.5, 10 * norm, 0.0):
        opts = TrainerOptions(epochs=1, batch_size=8, optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0,
                              warmup_epochs=0, grad_clip=clip, progress=False)
        t = Trainer(copy.deepcopy(_regression()), data, tmp_path / str(clip), opts, torch.device("cpu"))
        t._optimizer_step([batch], torch.Generator())
        scale = min(1.0, clip / norm) if clip else 1.0
        for p, w, gr in zip(t.method.parameters(), naive.parameters(), grads):
            assert torch.allclose(p, w.detach() - 0.1 * scale * gr, rtol=1e-5, atol=1e-6)
