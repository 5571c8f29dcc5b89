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

METHODS = ("tsne", "pca")
AXIS_NAMES = {"pca": "PC", "tsne": "t-SNE "}  #: axis label prefix per method


def embed_2d(x: np.ndarray, method: str = "tsne", seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """(N, D) embeddings → (N, 2) map coordinates.

    Args:
        x: embeddings. method: ``"tsne"`` (PCA-initialised, perplexity capped at (N−1)/3)
            or ``"pca"``. seed: random state. perplexity: t-SNE neighbourhood size.
    """
    if method not in METHODS:
        raise ValueError(f"embedding map method must be one of {METHODS}, got {method!r}")
    z = StandardScaler().fit_transform(np.asarray(x, float))
    z = np.nan_to_num(z)
    if len(z) < 3:
        raise ValueError(f"an embedding map needs at least 3 scans, got {len(z)}")
    if method == "pca" or z.shape[1] < 2:
        xy = PCA(n_components=min(2, z.shape[1]), random_state=seed).fit_transform(z)
        return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    if z.shape[1] > 50 and len(z) > 50:  # the usual PCA pre-reduction: faster, less noise
        z = PCA(n_components=50, random_state=seed).fit_transform(z)
    return TSNE(2, init="pca", perplexity=min(perplexity, (len(z) - 1) / 3), random_state=seed).fit_transform(z)


def plot_embedding_map(xy: np.ndarray, colours: dict[str, tuple[np.ndarray, list[str] | None]], path: str | Path,
                       title: str = "") -> Path:
    """One row of panels, one per colouring (see :func:`plot_embedding_maps`)."""
    return plot_embedding_maps([(title, xy, colours)], path)


def plot_embedding_maps(rows: list[tuple[str, np.ndarray, dict[str, tuple[np.ndarray, list[str] | None]]]],
                        path: str | Path, method: str = "") -> Path:
    """A grid of maps: a row per ``(title, xy, colours)`` (e.g. per encoder), a panel per colouring.

    Args:
        rows: ``xy`` (N, 2) map coordinates; ``colours`` ``{name: (values, category_names)}`` with
            ``category_names`` None for continuous values (NaN = missing, drawn grey), else int
            codes (−1 = missing) and their names.
        path: output PNG.
        method: ``"pca"`` or ``"tsne"``, named on the axes (PC1/PC2: directions of most variance;
            t-SNE 1/2: arbitrary directions, only neighbourhoods count).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = max(len(c) for _, _, c in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(4.2 * n_cols, 3.8 * len(rows)), squeeze=False)
    for ax_row, (title, xy, colours) in zip(axes, rows):
        for ax in ax_row[len(colours):]:
            ax.axis("off")
        for ax, (name, (values, names)) in zip(ax_row, colours.items()):
            _panel(ax, fig, plt, xy, np.asarray(values), names, name)
            ax.set(title=f"{title} coloured by {name}".strip(), xticks=[], yticks=[],
                   **({"xlabel": f"{AXIS_NAMES[method]}1", "ylabel": f"{AXIS_NAMES[method]}2"} if method in AXIS_NAMES else {}))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
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
