"""Peer SSL recipes run under the budget of a medssl benchmark row (issue #9, "peers in the same table").

Every peer has the same entry point::

    pretrain_<peer>(train_images,   # (N, 1, *S) float32 in [0, 1], no labels
                    spatial_dims,   # 2 or 3
                    epochs, batch, lr, seed,
                    device="cpu",
                    crop=28,        # side (or per-axis sides) of each view
                    encoder_kwargs=None,  # extra args of monai.networks.nets.resnet18 (None: stock network)
                    workers=0, history=None) -> torch.nn.Module

returning the trained backbone without its projection head, frozen (eval mode, no gradients,
CPU), mapping (B, 1, *S) → (B, D). All peers train ``monai.networks.nets.resnet18`` (without
classifier), so the benchmark can give them the same network as its medssl row.

``PEERS`` maps a name to a :class:`Peer` (supported spatial dims, one-line description,
``available()`` → ``(ok, reason)``, ``pretrain(...)``). Optional packages (lightly, nidl) are
imported only when a peer is used; a missing one gives ``(False, reason)``, never an error at import.

Usage from a benchmark script in ``benchmarks/`` (run as ``python benchmarks/x.py``, so that
``benchmarks/`` is on ``sys.path``)::

    from peers import PEERS
    ok, why = PEERS["lightly"].available()
    encoder = PEERS["monai_stock"].pretrain(x, 2, epochs=4, batch=256, lr=2e-3, seed=0)

``usable(names, spatial_dims)`` splits a ``--peers`` list into runnable peers and reasons for the
others; ``versions()`` lists the optional packages' versions for a result JSON.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Peer:
    """One peer recipe: the submodule holding ``pretrain_<name>``, ``available``, ``SPATIAL_DIMS``, ``DESCRIPTION``.

    The submodules import only torch/numpy at top level, so reading the registry never needs
    the optional packages.
    """

    name: str
    module: str

    def _module(self):
        return importlib.import_module(f"{__name__}.{self.module}")

    @property
    def spatial_dims(self) -> tuple[int, ...]:
        return tuple(self._module().SPATIAL_DIMS)

    @property
    def description(self) -> str:
        return self._module().DESCRIPTION

    def available(self, spatial_dims: int | None = None) -> tuple[bool, str]:
        """``(True, "")`` if the peer can run (for ``spatial_dims`` when given), else ``(False, reason)``."""
        if spatial_dims is not None and spatial_dims not in self.spatial_dims:
            return False, f"{self.name} supports spatial_dims {self.spatial_dims}, not {spatial_dims}"
        return self._module().available()

    def pretrain(self, train_images, spatial_dims: int, epochs: int, batch: int, lr: float, seed: int,
                 device: str = "cpu", crop: int | tuple = 28, **options) -> torch.nn.Module:
        """Call ``pretrain_<name>`` (see the package docstring for the arguments)."""
        return getattr(self._module(), f"pretrain_{self.name}")(train_images, spatial_dims, epochs, batch, lr, seed,
                                                               device, crop, **options)


PEERS: dict[str, Peer] = {name: Peer(name, module) for name, module in
                          (("monai_stock", "monai_stock"), ("lightly", "lightly_simclr"), ("nidl", "nidl_ssl"))}


def usable(names: list[str], spatial_dims: int) -> tuple[tuple[str, ...], dict[str, str]]:
    """Split requested peer ``names`` into those that can run here (in order, repeats dropped) and
    ``{name: reason}`` for the others; an unknown name stops the benchmark with the known ones."""
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise SystemExit(f"--peers: unknown peer(s) {unknown}; known: {', '.join(PEERS)}")
    ok, skipped = [], {}
    for n in dict.fromkeys(names):
        usable_here, why = PEERS[n].available(spatial_dims)
        if usable_here:
            ok.append(n)
        else:
            skipped[n] = why
    return tuple(ok), skipped


def versions() -> dict:
    """Versions of the optional packages the peers use (None: not installed), for a result's ``machine``."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("monai", "lightly", "nidl", "torchvision", "pytorch_lightning", "timm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def pretrain_monai_stock(*args, **kwargs) -> torch.nn.Module:
    return PEERS["monai_stock"].pretrain(*args, **kwargs)


def pretrain_lightly(*args, **kwargs) -> torch.nn.Module:
    return PEERS["lightly"].pretrain(*args, **kwargs)


def pretrain_nidl(*args, **kwargs) -> torch.nn.Module:
    return PEERS["nidl"].pretrain(*args, **kwargs)


__all__ = ["PEERS", "Peer", "pretrain_lightly", "pretrain_monai_stock", "pretrain_nidl", "usable", "versions"]
