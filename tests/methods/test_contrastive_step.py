"""ContrastiveMethod.training_step against a naive recomputation: which views, which embeddings, which gradients."""

import pytest
import torch
from torch import nn

from medssl.losses import FairKLLoss, NTXentLoss
from medssl.methods import ContrastiveMethod
from medssl.transforms.views import build_view_pipeline, make_views


class LinearEncoder(nn.Module):
    """Flatten → Linear: no batch statistics, so each view's embedding depends on that view alone."""

    spatial_dims, in_channels, out_dim = 3, 1, 6

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6**3, 6)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _method(n_views, fairkl_weight):
    torch.manual_seed(0)
    views = build_view_pipeline("none", 3, (6, 6, 6))  # random 6^3 crops of 10^3 scans: views differ
    return ContrastiveMethod(LinearEncoder(), NTXentLoss(0.5), views, n_views=n_views, proj_hidden_dim=8, proj_dim=4,
                             fairkl=FairKLLoss(), fairkl_weight=fairkl_weight)


def _grads(method):
    return [p.grad.detach().clone() for p in method.parameters()]


@pytest.mark.parametrize("n_views, fairkl_weight", [(2, 0.0), (3, 0.5)])
def test_step_loss_and_gradients_are_those_of_the_naive_loss_on_every_drawn_view(n_views, fairkl_weight):
    """The step draws n_views views with its generator, embeds every one (no view repeated, none dropped) and
    back-propagates the contrastive loss and w · FairKL into the encoder and head, neither detached. Naive: the
    views drawn again from the same seed, each (sample, view) embedded in one joint pass in sample-major order,
    the two losses summed, and autograd's gradients of that sum."""
    x = torch.rand(6, 1, 10, 10, 10, generator=torch.Generator().manual_seed(1))
    batch = {"image": x, "site": torch.tensor([0, 1, 0, 1, 1, 0])}
    method = _method(n_views, fairkl_weight)
    method.zero_grad()
    out = method.training_step(batch, torch.Generator().manual_seed(5))
    out.loss.backward()
    got = _grads(method)

    views = make_views(method.views, x, n_views, torch.Generator().manual_seed(5))
    assert views.shape[:2] == (6, n_views)
    for a in range(n_views):
        for b in range(a):
            assert not torch.allclose(views[:, a], views[:, b]), "the views of a sample must differ"
    flat = torch.cat([views[i, v][None] for i in range(6) for v in range(n_views)])
    projected = method.projector(method.encoder(flat))
    z = torch.stack([torch.stack([projected[i * n_views + v] for v in range(n_views)]) for i in range(6)])
    contrastive = NTXentLoss(0.5)(z)
    expected = contrastive + fairkl_weight * FairKLLoss()(z, None, batch["site"]) if fairkl_weight else contrastive
    method.zero_grad()
    expected.backward()
    assert out.logs["contrastive"].item() == pytest.approx(contrastive.item(), rel=1e-6)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for g, e in zip(got, _grads(method)):
        assert e.abs().sum() > 0
        assert torch.allclose(g, e, rtol=1e-5, atol=1e-7)
