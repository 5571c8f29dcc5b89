"""Embedding maps (``medssl/eval/embedding_map.py``): what the axes and colour bars say, on hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from medssl.eval.embedding_map import embed_2d, pca_2d, plot_embedding_map


def test_one_dimensional_embeddings_fill_the_first_axis():
    """A single feature is its own PC1 (all the variance); PC2 is the padded zero axis, for PCA and t-SNE alike."""
    x = np.random.default_rng(0).normal(size=(12, 1))
    xy, explained = pca_2d(x)
    z = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std()
    assert np.abs(xy[:, 0]) == pytest.approx(np.abs(z)) and (xy[:, 1] == 0).all() and list(explained) == [1.0, 0.0]
    assert embed_2d(x, "tsne") == pytest.approx(xy)


def test_a_map_needs_three_scans():
    with pytest.raises(ValueError, match="at least 3 scans, got 2"):
        pca_2d(np.random.default_rng(0).normal(size=(2, 4)))


def test_the_age_colour_bar_states_its_unit(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, *a, **k: (saved.append(fig), open(path, "wb").close()))
    xy = np.random.default_rng(0).normal(size=(6, 2))
    plot_embedding_map(xy, {"age": (np.linspace(20, 70, 6), None), "score": (np.arange(6.0), None)}, tmp_path / "m.png")
    assert [ax.get_ylabel() for ax in saved[0].axes[2:]] == ["age (years)", "score"]  # the two colour bars


def test_only_missing_codes_are_drawn_grey(tmp_path, monkeypatch):
    """Code −1 (no site recorded) is grey; code 0 is a site like the others, in its own colour."""
    from matplotlib.colors import to_rgba

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, *a, **k: (saved.append(fig), open(path, "wb").close()))
    xy = np.random.default_rng(0).normal(size=(6, 2))
    plot_embedding_map(xy, {"site": (np.array([0, 0, 1, 1, -1, -1]), ["Guys", "HH"])}, tmp_path / "m.png")
    colour = {c.get_label(): tuple(c.get_facecolor()[0]) for c in saved[0].axes[0].collections}
    grey = to_rgba("lightgrey")
    assert colour["missing"] == grey and colour["Guys"] != grey and colour["HH"] != grey
