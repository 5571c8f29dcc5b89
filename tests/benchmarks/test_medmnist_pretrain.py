"""``benchmarks/medmnist_pretrain.py``: the recipes of medssl's SimCLR and MAE rows and the budget the peers get."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark_module import load_benchmark

from medssl.transforms.views import build_view_pipeline


def _part(name: str):
    return load_benchmark(f"medmnist_{name}")


# a budget whose every pretraining number differs from the fine-tuning one and from the defaults
BUDGET = dict(width=8, conv1_stride=2, ssl_epochs=3, ssl_batch=16, ssl_lr=5e-3, crop=20, preset="ct", ft_batch=8,
              ft_lr=1e-4, mae_epochs=6, mae_lr=7e-4, vit_layers=2, patch=4)


def test_peers_get_the_simclr_budget_and_the_network_of_the_medssl_row(monkeypatch):
    """docs/benchmarks_medmnist.md, Peers: same epochs, batch, lr, view size, seed and network (width, 3×3 stem)."""
    pretrain, b = _part("pretrain"), _part("data").Budget(**BUDGET)
    calls = []

    class Fake:
        def pretrain(self, *args, **kwargs):
            calls.append((args, kwargs))
            kwargs["history"].append({"epoch": 0, "loss": 1.0, "steps": 1, "seconds": 0.0})
            return torch.nn.Identity()

    monkeypatch.setitem(pretrain.PEERS, "fake", Fake())
    x = np.zeros((4, 1, 20, 20, 20), np.float32)
    out = pretrain.pretrain_peers(x, 3, b, 11, "cpu", ["fake"])
    (args, kwargs), = calls
    assert args[0] is x and args[1:] == (3, 3, 16, 5e-3, 11, "cpu", 20)
    assert kwargs["encoder_kwargs"] == {"widen_factor": 8 / 64, "conv1_t_size": 3, "conv1_t_stride": 2,
                                        "no_max_pool": True}
    assert out["fake"]["history"] == [{"epoch": 0, "loss": 1.0, "steps": 1, "seconds": 0.0}]


def test_a_peer_starts_from_the_weights_of_the_medssl_row_and_leaves_the_callers_random_state():
    """With the same seed, the stock MONAI recipe's network before training is medssl's encoder, weight for weight."""
    pretrain, b = _part("pretrain"), _part("data").Budget(**BUDGET)
    x = np.random.default_rng(0).random((4, 1, 20, 20), dtype=np.float32)
    peer = pretrain.PEERS["monai_stock"].pretrain(x, 2, 0, 2, 1e-3, 13, "cpu", 20,
                                                  encoder_kwargs=pretrain.peer_encoder_kwargs(b))
    ours = pretrain.make_encoder(2, b, 13).net.state_dict()
    assert ours.keys() == peer.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in peer.state_dict().items())
    assert ours["conv1.weight"].shape[-2:] == (3, 3) and ours["conv1.weight"].shape[0] == 8
    torch.manual_seed(5)
    pretrain.peer_encoder_kwargs(b)
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_simclr_and_mae_rows_train_the_documented_recipes(monkeypatch, spatial_dims):
    """docs/benchmarks_medmnist.md, "What one run does": SimCLR NT-Xent τ = 0.1, projection 4·D → 64, views of the
    preset cropped to `crop`, AdamW at ssl_lr with warm-up; MAE mask 0.75, decoder 128 × 2, crops of scale 0.8–1
    (3D also flips), AdamW lr mae_lr, weight decay 0.05, warm-up; both seeded, on the budget's epochs and batch."""
    pretrain, b = _part("pretrain"), _part("data").Budget(**BUDGET)
    runs = []
    monkeypatch.setattr(pretrain, "fit", lambda method, x, opts, *a, **settings: runs.append((method, opts)) or {})
    x = np.zeros((4, 1, *(20,) * spatial_dims), np.float32)
    simclr = pretrain.pretrain_simclr(x, spatial_dims, b, 3, None, "cpu")["encoder"]
    pretrain.pretrain_mae(x, spatial_dims, b, 3, None, "cpu")
    (method, opts), (mae, mae_opts) = runs
    assert method.loss.temperature == 0.1 and method.encoder is simclr and simclr.out_dim == 8 * 8
    linears = [m for m in method.projector if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 256), (256, 64)]
    assert method.views.crop.size == (20,) * spatial_dims
    assert method.views.params == build_view_pipeline("ct", spatial_dims, (20,) * spatial_dims).params
    assert (opts.epochs, opts.batch_size, opts.lr, opts.seed) == (3, 16, 5e-3, 3) and opts.warmup_epochs > 0
    assert torch.equal(simclr.net.conv1.weight, pretrain.make_encoder(spatial_dims, b, 3).net.conv1.weight)
    assert mae.mask_ratio == 0.75 and len(mae.decoder.blocks) == 2 and mae.decoder.embed.out_features == 128
    assert mae.views.params.crop_scale == (0.8, 1.0) and (mae.views.params.flip_prob > 0) == (spatial_dims == 3)
    vit = pretrain.make_vit(spatial_dims, 20, b, 3).state_dict()
    assert all(torch.equal(vit[k], v) for k, v in mae.encoder.state_dict().items())  # seeded like the CNN
    assert len(mae.encoder.net.blocks) == 2 and mae.encoder.patch_size in (4, (4,) * spatial_dims)
    assert (mae_opts.epochs, mae_opts.batch_size, mae_opts.lr, mae_opts.weight_decay) == (6, 16, 7e-4, 0.05)
    assert mae_opts.warmup_epochs > 0 and mae_opts.seed == 3


@pytest.mark.parametrize("methods", ["", " , ", "simclr,byol"])
def test_a_budget_without_a_known_method_stops(methods):
    with pytest.raises(SystemExit, match="expected simclr, mae"):
        _part("pretrain").method_names(_part("data").Budget(methods=methods))
