"""Peer SSL recipes of ``benchmarks/peers`` (stock MONAI, lightly, nidl) and their rows in ``benchmarks/medmnist.py``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmark_module import load_benchmark
from shared_data import SHARED, shared_path


def _bench():
    return load_benchmark("medmnist", "bench_medmnist_peers")


_bench()  # puts benchmarks/ on sys.path
from peers import PEERS  # noqa: E402 - benchmarks/peers, imported as package `peers` (benchmarks/ is not a package)



SMALL = {"widen_factor": 0.125, "conv1_t_size": 3, "conv1_t_stride": 2, "no_max_pool": True}  # D = 64


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Blobs of random position and size in [0, 1]: (n, 1, *shape) float32."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    out = np.empty((n, 1, *shape), np.float32)
    for i in range(n):
        c = rng.uniform(0.3, 0.7, len(shape))[:, None] * np.array(shape)[:, None]
        r = rng.uniform(0.1, 0.3) * min(shape)
        d2 = ((grid.reshape(len(shape), -1) - c) ** 2).sum(0).reshape(shape)
        out[i, 0] = np.exp(-d2 / (2 * r**2))
    return out


def _initial(spatial_dims: int, seed: int) -> torch.nn.Module:
    """The untrained network a peer starts from, built independently with MONAI's factory."""
    from monai.networks.nets import resnet18

    torch.manual_seed(seed)
    return resnet18(spatial_dims=spatial_dims, n_input_channels=1, feed_forward=False, **SMALL).eval()


def _check_trained(encoder: torch.nn.Module, x: np.ndarray, spatial_dims: int, seed: int) -> None:
    """Finite (B, 64) embeddings, frozen, and weights that moved away from the seeded initial network."""
    z = encoder(torch.from_numpy(x[:5]))
    assert z.shape == (5, 64) and torch.isfinite(z).all()
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    before = _initial(spatial_dims, seed).state_dict()
    after = encoder.state_dict()
    assert before.keys() == after.keys()
    moved = [k for k in before if before[k].dtype.is_floating_point and not torch.equal(before[k], after[k])]
    assert "conv1.weight" in moved and any(k.startswith("layer4") for k in moved)


def test_registry_lists_the_three_peers_with_reasons():
    assert set(PEERS) == {"monai_stock", "lightly", "nidl"}
    assert PEERS["monai_stock"].spatial_dims == (2, 3) and PEERS["lightly"].spatial_dims == (2,)
    assert PEERS["nidl"].spatial_dims == (3,)
    for peer in PEERS.values():
        ok, why = peer.available()
        assert isinstance(ok, bool) and (ok or why) and peer.description
    assert PEERS["monai_stock"].available() == (True, "")
    ok, why = PEERS["lightly"].available(3)
    assert not ok and "spatial_dims" in why


@pytest.mark.parametrize("spatial_dims, shape, n, batch", [(2, (28, 28), 24, 8), (3, (16, 16, 16), 8, 4)])
def test_monai_stock_trains_and_returns_a_frozen_backbone(spatial_dims, shape, n, batch):
    x = _images(n, shape)
    history = []
    enc = PEERS["monai_stock"].pretrain(x, spatial_dims, epochs=1, batch=batch, lr=1e-3, seed=3, crop=shape,
                                        encoder_kwargs=SMALL, history=history)
    _check_trained(enc, x, spatial_dims, seed=3)
    assert len(history) == 1 and history[0]["steps"] == n // batch and math.isfinite(history[0]["loss"])


def test_monai_stock_same_seed_same_weights_and_input_checks():
    x = _images(16, (28, 28))
    a = PEERS["monai_stock"].pretrain(x, 2, 1, 8, 1e-3, seed=5, encoder_kwargs=SMALL)
    b = PEERS["monai_stock"].pretrain(x, 2, 1, 8, 1e-3, seed=5, encoder_kwargs=SMALL)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match=r"\(N, 1, \*S\)"):
        PEERS["monai_stock"].pretrain(x[:, 0], 2, 1, 8, 1e-3, seed=0)
    with pytest.raises(ValueError, match="must not set"):
        PEERS["monai_stock"].pretrain(x, 2, 1, 8, 1e-3, seed=0, encoder_kwargs={"spatial_dims": 3})


def test_lightly_2d_only_and_trains_when_installed():
    with pytest.raises(ValueError, match="2D only"):
        PEERS["lightly"].pretrain(_images(8, (8, 8, 8)), 3, 1, 4, 1e-3, seed=0)
    ok, why = PEERS["lightly"].available()
    if not ok:
        pytest.skip(why)
    x = _images(24, (28, 28))
    history = []
    enc = PEERS["lightly"].pretrain(x, 2, 1, 8, 1e-3, seed=2, crop=28, encoder_kwargs=SMALL, history=history)
    _check_trained(enc, x, 2, seed=2)
    assert history[0]["steps"] == 3


def test_nidl_3d_simclr_and_yaware_when_installed():
    with pytest.raises(ValueError, match="3D only"):
        PEERS["nidl"].pretrain(_images(8, (28, 28)), 2, 1, 4, 1e-3, seed=0)
    ok, why = PEERS["nidl"].available()
    if not ok:
        pytest.skip(why)
    x = _images(8, (16, 16, 16))
    history = []
    enc = PEERS["nidl"].pretrain(x, 3, 1, 4, 1e-3, seed=4, crop=16, encoder_kwargs=SMALL, history=history)
    _check_trained(enc, x, 3, seed=4)
    assert history[0]["steps"] == 2
    enc = PEERS["nidl"].pretrain(x, 3, 1, 4, 1e-3, seed=4, crop=16, encoder_kwargs=SMALL,
                                 aux=np.linspace(20, 80, 8), bandwidth=25.0)
    _check_trained(enc, x, 3, seed=4)


def test_peers_get_the_network_and_initial_weights_of_the_medssl_row():
    """``peer_encoder_kwargs`` rebuilds medssl's benchmark encoder with MONAI's factory, weight for weight."""
    from peers.common import monai_resnet18

    data, pretrain = load_benchmark("medmnist_data"), load_benchmark("medmnist_pretrain")
    for dataset in ("pneumonia", "adrenal"):
        b = data.DEFAULTS[dataset]
        dims = 2 if dataset == "pneumonia" else 3
        medssl_enc = pretrain.make_encoder(dims, b, seed=7).eval()
        torch.manual_seed(7)
        peer = monai_resnet18(dims, pretrain.peer_encoder_kwargs(b)).eval()
        medssl_net, peer_net = medssl_enc.net.state_dict(), peer.state_dict()
        assert medssl_net.keys() == peer_net.keys()
        assert all(torch.equal(medssl_net[k], peer_net[k]) for k in medssl_net)
        x = torch.randn(2, 1, *(16,) * dims)
        with torch.no_grad():  # the same function too (stem stride and pooling are not in the state dict)
            assert torch.allclose(medssl_enc(x), peer(x), atol=1e-5)


def test_medmnist_quick_with_peers(tmp_path):
    """--peers adds '<peer> + linear probe' rows scored like the SimCLR probe; a 3D-only peer is skipped with why."""
    shared_path("data", "medmnist_pneumoniamnist_reconstructed", "pneumoniamnist.npz")
    res = _bench().main(["--dataset", "pneumonia", "--quick", "--seeds", "0", "--threads", "1", "--n-boot", "20",
                         "--data-root", str(SHARED / "data"), "--out", str(tmp_path), "--set", "fractions=1.0", "limit=96",
                         "ssl_batch=32",
                         "--peers", "monai_stock", "nidl"])
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["peers"] == ["monai_stock"] and "spatial_dims" in on_disk["peers_skipped"]["nidl"]
    seed0 = on_disk["per_seed"][0]
    probe = seed0["few_label"]["1.0"]["monai_stock_probe"]
    assert 0.0 <= probe["auc"] <= 1.0 and probe["n_test"] == 96 and probe["C"] in load_benchmark("medmnist_scoring").PROBE_CS
    assert on_disk["summary"]["monai_stock_probe"]["auc_mean"] == probe["auc"]
    hist = seed0["peer_pretrain"]["monai_stock"]["history"]
    assert len(hist) == on_disk["budget"]["ssl_epochs"] and hist[0]["steps"] == 96 // 32
    assert Path(res["figure"]).name == "medmnist_pneumonia_peers.png" and Path(res["figure"]).is_file()


def test_input_checks_refuse_what_the_recipes_cannot_train_on():
    """(N, 1, *S) with 2 or 3 spatial axes and N ≥ 2 (a contrastive batch); float32 out, values kept."""
    from peers.common import as_shape, check_images

    for bad, dims in ((np.zeros((4, 1, 2, 2, 2, 2)), 4), (np.zeros((4, 3, 8, 8)), 2), (np.zeros((4, 1, 8, 8, 8)), 2),
                      (np.zeros((1, 1, 8, 8)), 2)):
        with pytest.raises(ValueError):
            check_images(bad, dims)
    x = np.linspace(0, 1, 2 * 36).reshape(2, 1, 6, 6)  # float64, the smallest contrastive set
    t = check_images(x, 2)
    assert t.dtype == torch.float32 and np.allclose(t.numpy(), x)
    assert as_shape(28, 3) == (28, 28, 28) and as_shape((8, 16), 2) == (8, 16)
    with pytest.raises(ValueError, match="entries"):
        as_shape((8, 8), 3)


def test_unit_range_rescales_each_image_on_its_own():
    from peers.common import unit_range

    x = np.random.default_rng(0).normal(size=(3, 1, 5, 5)) * np.array([1, 10, 100])[:, None, None, None]
    lo, hi = x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)
    assert np.allclose(unit_range(x), (x - lo) / (hi - lo), atol=1e-6) and unit_range(x).dtype == np.float32


def test_seed_everything_seeds_python_numpy_and_torch_for_any_seed():
    import random

    from peers.common import seed_everything

    seed_everything(12345)
    got = (random.random(), np.random.random(), torch.rand(1).item())
    want = (random.Random(12345).random(), np.random.RandomState(12345).random(),
            torch.rand(1, generator=torch.Generator().manual_seed(12345)).item())
    assert got == want
    seed_everything(2**40 + 7)  # NumPy takes < 2**32 only; torch and Python any int
    assert torch.rand(1).item() == torch.rand(1, generator=torch.Generator().manual_seed(2**40 + 7)).item()


def test_only_a_resnet18_is_translated_and_monai_resnet18_fixes_its_three_arguments():
    from peers.common import monai_resnet18, resnet_kwargs_of

    from medssl.encoders import build_encoder

    for other in ("resnet10", "resnet34", "resnet50"):
        with pytest.raises(ValueError, match="ResNet-18"):
            resnet_kwargs_of(build_encoder(other, 2, 1, width=8))
    torch.manual_seed(1)  # medssl's default stem (7×7, stride 2, max-pool), not the benchmarks' one
    ours = build_encoder("resnet18", 2, 1, width=16).eval()
    torch.manual_seed(1)
    theirs = monai_resnet18(2, resnet_kwargs_of(ours)).eval()
    x = torch.randn(2, 1, 24, 24)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
    for fixed in ("spatial_dims", "n_input_channels", "feed_forward"):
        with pytest.raises(ValueError, match=fixed):
            monai_resnet18(2, {fixed: 1})


def test_embedding_dim_leaves_the_mode_and_batch_norm_statistics_alone():
    from peers.common import embedding_dim, monai_resnet18

    net = monai_resnet18(2, SMALL).train()
    stats = {k: v.clone() for k, v in net.state_dict().items()}
    assert embedding_dim(net, (28, 28)) == 64 and net.training  # 512 · widen_factor 0.125
    assert all(torch.equal(stats[k], v) for k, v in net.state_dict().items())


def test_two_views_are_two_independent_draws_of_one_image():
    from peers.common import TwoViews

    images = torch.arange(3.0).reshape(3, 1, 1)
    ds = TwoViews(images, lambda x: x + 1 + torch.rand(()))
    v1, v2 = ds[2]
    assert len(ds) == 3 and not torch.equal(v1, v2) and 3 <= v1.item() < 4 and 3 <= v2.item() < 4


def test_train_two_views_is_the_plain_loop_written_out():
    """Per batch: loss(head(enc(v1)), head(enc(v2))), fresh gradients, one step; history: mean loss per epoch."""
    from peers.common import train_two_views

    def loss_fn(a, b):  # asymmetric on purpose: the first argument is view 1
        return ((a - 2 * b) ** 2).mean()

    batches = [(torch.randn(4, 3, generator=torch.Generator().manual_seed(i)),
                torch.randn(4, 3, generator=torch.Generator().manual_seed(10 + i))) for i in range(3)]
    torch.manual_seed(0)
    enc, head = torch.nn.Linear(3, 5), torch.nn.Linear(5, 2)
    ref_enc, ref_head = torch.nn.Linear(3, 5), torch.nn.Linear(5, 2)
    ref_enc.load_state_dict(enc.state_dict())
    ref_head.load_state_dict(head.state_dict())
    history = []
    train_two_views(enc, head, loss_fn, torch.optim.SGD([*enc.parameters(), *head.parameters()], lr=0.05), batches,
                    2, "cpu", history)
    ref_params = [*ref_enc.parameters(), *ref_head.parameters()]
    means = []
    for _ in range(2):
        losses = []
        for v1, v2 in batches:
            loss = loss_fn(ref_head(ref_enc(v1)), ref_head(ref_enc(v2)))
            grads = torch.autograd.grad(loss, ref_params)
            with torch.no_grad():
                for p, g in zip(ref_params, grads):
                    p -= 0.05 * g
            losses.append(loss.item())
        means.append(sum(losses) / len(losses))
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip([*enc.parameters(), *head.parameters()], ref_params))
    assert [h["epoch"] for h in history] == [0, 1] and [h["steps"] for h in history] == [3, 3]
    assert [h["loss"] for h in history] == pytest.approx(means, rel=1e-5)
    train_two_views(enc, head, loss_fn, torch.optim.SGD(enc.parameters(), lr=0.05), batches, 0, "cpu", history)
    assert len(history) == 2  # 0 epochs: no step, no entry


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_monai_stock_views_are_the_documented_transforms(spatial_dims):
    """The view pipeline of docs/benchmarks_medmnist.md (Peers) and the module docstring, parameter for parameter."""
    from monai import transforms as T
    from peers.monai_stock import build_views

    crop = (12, 10, 8)[:spatial_dims]
    view = build_views(spatial_dims, crop, seed=1)
    kinds = [type(t) for t in view.transforms]
    assert kinds == [T.RandScaleCrop, T.Resize, *[T.RandFlip] * spatial_dims, T.RandAffine, T.RandAdjustContrast,
                     T.RandGaussianNoise, T.EnsureType]
    crop_t, resize, *flips = view.transforms[:2 + spatial_dims]
    affine, contrast, noise = view.transforms[2 + spatial_dims:-1]
    assert (crop_t.roi_scale, crop_t.max_roi_scale, crop_t.random_size) == (0.5, 1.0, True)
    assert tuple(resize.spatial_size) == crop and resize.mode == ("bilinear" if spatial_dims == 2 else "trilinear")
    assert [(f.prob, f.flipper.spatial_axis) for f in flips] == [(0.5, a) for a in range(spatial_dims)]
    grid = affine.rand_affine_grid
    assert affine.prob == 0.5 and len(grid.rotate_range) == (1 if spatial_dims == 2 else 3)
    assert all(r == pytest.approx(math.radians(15)) for r in grid.rotate_range)
    assert tuple(grid.scale_range) == (0.1,) * spatial_dims
    assert (contrast.prob, tuple(contrast.gamma)) == (0.5, (0.7, 1.5)) and (noise.prob, noise.std) == (0.5, 0.05)
    x = torch.from_numpy(_images(1, (20,) * spatial_dims)[0])
    a = [view(x) for _ in range(2)]
    b = [v(x) for v in (build_views(spatial_dims, crop, seed=1),) for _ in range(2)]
    assert a[0].shape == (1, *crop) and a[0].dtype == torch.float32 and not torch.equal(a[0], a[1])
    assert all(torch.equal(p, q) for p, q in zip(a, b))  # seeded: the same draws again
    assert not torch.equal(build_views(spatial_dims, crop, seed=2)(x), a[0])


def test_monai_stock_steps_loss_head_and_optimiser_are_the_documented_ones(monkeypatch):
    """ContrastiveLoss(τ=0.1) on two different 128-d projections of `batch` images, N // batch steps (last partial
    batch dropped, a batch above N is N), Adam over encoder and head at the given lr without weight decay."""
    import monai.data
    import monai.losses

    calls, optimisers = [], []

    class Loss(monai.losses.ContrastiveLoss):
        def forward(self, a, b):
            out = super().forward(a, b)
            calls.append((self.temperature, a.shape, b.shape, torch.equal(a, b), out.item()))
            return out

    class Adam(torch.optim.Adam):
        def __init__(self, params, **kw):
            super().__init__(params, **kw)
            optimisers.append(self)

    class Loader(monai.data.DataLoader):
        def __init__(self, dataset, **kw):
            super().__init__(dataset, **kw)
            loaders.append((dataset[0][0].shape, kw["shuffle"], kw["drop_last"], kw["generator"].initial_seed()))

    loaders = []
    monkeypatch.setattr(monai.losses, "ContrastiveLoss", Loss)
    monkeypatch.setattr(torch.optim, "Adam", Adam)
    monkeypatch.setattr(monai.data, "DataLoader", Loader)
    x, history = _images(11, (16, 16)), []
    narrow = {**SMALL, "widen_factor": 1 / 16}  # D = 512 / 16 = 32
    enc = PEERS["monai_stock"].pretrain(x, 2, 2, 4, 3e-3, seed=3, crop=12, encoder_kwargs=narrow, history=history)
    assert [h["steps"] for h in history] == [2, 2] and len(calls) == 4  # 11 // 4
    assert loaders == [((1, 12, 12), True, True, 3)]  # views of side `crop`, shuffled by the run's seed
    assert all(c[:4] == (0.1, (4, 128), (4, 128), False) for c in calls)
    assert [h["loss"] for h in history] == pytest.approx([np.mean([c[4] for c in calls[:2]]),
                                                          np.mean([c[4] for c in calls[2:]])])
    (opt,) = optimisers
    group = opt.param_groups[0]
    n_head = 32 * 32 + 32 + 32 * 128 + 128  # Linear(D, D) → ReLU → Linear(D, 128), D = 32
    assert (group["lr"], group["weight_decay"]) == (3e-3, 0)
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in enc.parameters()) + n_head
    PEERS["monai_stock"].pretrain(x, 2, 1, 64, 3e-3, seed=0, crop=12, encoder_kwargs=narrow, history=history)
    assert history[-1]["steps"] == 1 and calls[-1][1] == (11, 128)


def test_usable_keeps_order_drops_repeats_and_names_what_cannot_run():
    from peers import usable, versions

    ok, skipped = usable(["monai_stock", "lightly", "monai_stock"], 3)
    assert ok == ("monai_stock",) and set(skipped) == {"lightly"} and "spatial_dims" in skipped["lightly"]
    names = ["nidl", "lightly", "monai_stock"]  # nidl is 3D only; lightly runs where it is installed
    ok, skipped = usable(names, 2)
    assert [n for n in names if n in ok] == list(ok) and [n for n in names if n in skipped] == list(skipped)
    with pytest.raises(SystemExit, match="unknown peer.*'simclr'.*known: monai_stock"):
        usable(["monai_stock", "simclr"], 2)
    import importlib.util

    import monai

    v = versions()
    assert v["monai"] == monai.__version__
    assert all((v[pkg] is None) == (importlib.util.find_spec(pkg) is None) for pkg in v)  # None: not installed


def test_lightly_and_nidl_refuse_bad_settings_before_needing_their_packages():
    """Checked first, so a wrong call fails the same way with or without lightly / nidl installed."""
    with pytest.raises(ValueError, match="square"):
        PEERS["lightly"].pretrain(_images(4, (28, 28)), 2, 1, 4, 1e-3, seed=0, crop=(28, 20))
    with pytest.raises(ValueError, match="bandwidth"):
        PEERS["nidl"].pretrain(_images(4, (8, 8, 8)), 3, 1, 4, 1e-3, seed=0, aux=np.arange(4.0))
