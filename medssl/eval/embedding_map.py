"""2D maps of embeddings (t-SNE or PCA), coloured by age, site and diagnosis.

A map is a picture, not a metric: use it to *see* whether scans cluster by site (a site
effect) or order by age; the numbers come from the probes. t-SNE (van der Maaten & Hinton,
JMLR 2008) shows local neighbourhoods but distorts global distances; PCA is linear, exact and
instant. Both run on standardised embeddings, seeded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler

from medssl.atomic import atomic_write

METHODS = ("tsne", "pca")
AXIS_NAMES = {"pca": "PC", "tsne": "t-SNE "}  #: axis label prefix per method


def _standardised(x: np.ndarray) -> np.ndarray:
    z = np.nan_to_num(StandardScaler().fit_transform(np.asarray(x, float)))
    if len(z) < 3:
        raise ValueError(f"an embedding map needs at least 3 scans, got {len(z)}")
    return z


def pca_2d(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) embeddings → (N, 2) PCA coordinates of the standardised embeddings, and the (2,)
    fraction of their total variance each axis explains (0 for the padded axis when D = 1)."""
    z = _standardised(x)
    pca = PCA(n_components=min(2, z.shape[1]), random_state=seed)
    xy = pca.fit_transform(z)
    pad = 2 - xy.shape[1]
    return np.pad(xy, ((0, 0), (0, pad))), np.pad(np.nan_to_num(pca.explained_variance_ratio_), (0, pad))


def embed_2d(x: np.ndarray, method: str = "tsne", seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """(N, D) embeddings → (N, 2) map coordinates.

    Args:
        x: embeddings. method: ``"tsne"`` (PCA-initialised, perplexity capped at (N−1)/3)
            or ``"pca"`` (:func:`pca_2d`). seed: random state. perplexity: t-SNE neighbourhood size.
    """
    if method not in METHODS:
        raise ValueError(f"embedding map method must be one of {METHODS}, got {method!r}")
    z = _standardised(x)
    if method == "pca" or z.shape[1] < 2:
        return pca_2d(z, seed)[0]
    if z.shape[1] > 50 and len(z) > 50:  # the usual PCA pre-reduction: faster, less noise
        z = PCA(n_components=50, random_state=seed).fit_transform(z)
    return TSNE(2, init="pca", perplexity=min(perplexity, (len(z) - 1) / 3), random_state=seed).fit_transform(z)


def axis_labels(method: str, explained: np.ndarray | None = None) -> tuple[str, str]:
    """Axis names of a map: ``("PC1 (23 % of variance)", …)`` for PCA with its explained variance
    ratios, ``("t-SNE 1", "t-SNE 2")`` for t-SNE (arbitrary directions: only neighbourhoods count)."""
    names = [f"{AXIS_NAMES.get(method, '')}{i}" for i in (1, 2)]
    if explained is not None:
        names = [f"{n} ({100 * r:.0f} % of variance)" for n, r in zip(names, explained)]
    return names[0], names[1]


def plot_embedding_map(xy: np.ndarray, colours: dict[str, tuple[np.ndarray, list[str] | None]], path: str | Path,
                       title: str = "") -> Path:
    """One row of panels, one per colouring (see :func:`plot_embedding_maps`)."""
    return plot_embedding_maps([(title, xy, colours)], path)


def plot_embedding_maps(rows: list[tuple[str, np.ndarray, dict[str, tuple[np.ndarray, list[str] | None]]]],
                        path: str | Path, axes_names: list[tuple[str, str]] | None = None) -> Path:
    """A grid of maps: a row per ``(title, xy, colours)`` (e.g. per encoder), a panel per colouring.

    Args:
        rows: ``xy`` (N, 2) map coordinates; ``colours`` ``{name: (values, category_names)}`` with
            ``category_names`` None for continuous values (NaN = missing, drawn grey), else int
            codes (−1 = missing) and their names. A row with no colouring (``{}``: no scan has an
            age, site or label) is one uncoloured panel, without a colour bar.
        path: output PNG.
        axes_names: per row, the (x, y) axis names (:func:`axis_labels`); none if not given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = max(1, *(len(c) for _, _, c in rows))
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(4.2 * n_cols, 3.8 * len(rows)), squeeze=False)
    for r, (ax_row, (title, xy, colours)) in enumerate(zip(axes, rows)):
        for ax in ax_row[max(1, len(colours)):]:
            ax.axis("off")
        labels = dict(zip(("xlabel", "ylabel"), axes_names[r])) if axes_names else {}
        if not colours:
            ax_row[0].scatter(xy[:, 0], xy[:, 1], s=10)
            ax_row[0].set(title=title, xticks=[], yticks=[], **labels)
        for ax, (name, (values, names)) in zip(ax_row, colours.items()):
            _panel(ax, fig, plt, xy, np.asarray(values), names, name)
            ax.set(title=f"{title} coloured by {name}".strip(), xticks=[], yticks=[], **labels)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90))  # an earlier map is replaced whole
    plt.close(fig)
    return path


def _panel(ax, fig, plt, xy: np.ndarray, values: np.ndarray, names: list[str] | None, name: str = "") -> None:
    if names is None:
        ok = np.isfinite(values.astype(float))
        ax.scatter(xy[~ok, 0], xy[~ok, 1], s=8, c="lightgrey")
        sc = ax.scatter(xy[ok, 0], xy[ok, 1], s=10, c=values[ok].astype(float), cmap="viridis")
        fig.colorbar(sc, ax=ax, shrink=0.8, label=f"{name} (years)" if name == "age" else name)
        return
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for code, label in [(-1, "missing"), *enumerate(names)]:
        m = values == code
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=10, label=label, c="lightgrey" if code < 0 else [cmap(code % cmap.N)])
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
