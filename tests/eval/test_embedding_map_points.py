"""Embedding maps (``medssl/eval/embedding_map.py``): each scan is drawn at its own (x, y) with its own colour, each
row of maps names its own axes, and the t-SNE map is scikit-learn's t-SNE with the documented perplexity cap."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from medssl.eval.embedding_map import axis_labels, embed_2d, plot_embedding_map, plot_embedding_maps


@pytest.fixture
def saved(monkeypatch) -> list:
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, *a, **k: (figures.append(fig), open(path, "wb").close()))
    return figures


def test_each_scan_is_drawn_at_its_coordinates_in_its_colour(tmp_path, saved):
    """Ages are continuous colours (NaN: grey); the points must keep x as x, y as y and their own age."""
    xy = np.c_[np.arange(6.0), 10 * np.arange(6.0) ** 2]  # x and y on different scales: a swap shows
    age = np.array([20.0, np.nan, 35.0, 50.0, np.nan, 71.0])
    plot_embedding_map(xy, {"age": (age, None)}, tmp_path / "m.png")
    grey, coloured = saved[0].axes[0].collections
    ok = np.isfinite(age)
    np.testing.assert_array_equal(grey.get_offsets(), xy[~ok])
    np.testing.assert_array_equal(coloured.get_offsets(), xy[ok])
    np.testing.assert_array_equal(coloured.get_array(), age[ok])  # point i coloured by scan i's age


def test_each_row_of_maps_names_its_own_axes(tmp_path, saved):
    """A PCA row (axes with their share of the variance) above a t-SNE row: each keeps its own x and y names."""
    rng = np.random.default_rng(0)
    site = (np.array([0, 1, 0, 1, -1, 0]), ["Guys", "HH"])
    names = [axis_labels("pca", np.array([0.41, 0.17])), axis_labels("tsne")]
    plot_embedding_maps([("pretrained", rng.normal(size=(6, 2)), {"site": site}),
                         ("random init", rng.normal(size=(6, 2)), {"site": site})], tmp_path / "m.png", names)
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in saved[0].axes] == [
        ("PC1 (41 % of variance)", "PC2 (17 % of variance)"), ("t-SNE 1", "t-SNE 2")]


def test_tsne_map_caps_the_perplexity_at_a_third_of_the_other_scans():
    """10 scans: perplexity 30 is capped at (N − 1)/3 = 3; t-SNE of the standardised embeddings, PCA-initialised."""
    x = np.random.default_rng(1).normal(size=(10, 4)) * [1.0, 5.0, 0.2, 3.0]
    z = (x - x.mean(0)) / x.std(0)
    expected = TSNE(2, init="pca", perplexity=3.0, random_state=7).fit_transform(z)
    np.testing.assert_allclose(embed_2d(x, "tsne", seed=7, perplexity=30.0), expected, rtol=1e-6, atol=1e-6)
