"""LARS optimiser (You et al., "Large Batch Training of Convolutional Networks", 2017), as used
for large-batch SimCLR (Chen et al., 2020): SGD with momentum where each weight tensor's step
is scaled by the trust ratio ``eta · ||w|| / ||g + wd · w||`` (the norm of the decayed gradient, as in
SimCLR's ``lars_optimizer.py``; the paper's eq. uses ``||g|| + wd · ||w||``, an upper bound of it). Parameters
with ndim ≤ 1 (biases, norm scales) are neither adapted nor decayed, following SimCLR."""

from __future__ import annotations

import torch


class LARS(torch.optim.Optimizer):
    """Args: params, lr, momentum (0.9), weight_decay (1e-6 in SimCLR), eta (trust coefficient 1e-3)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim API
        loss = None
        if closure is not None:  # step runs under no_grad; the closure's backward needs autograd (as torch.optim)
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm))
                    g = g * trust
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = torch.clone(g).detach()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss
