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
