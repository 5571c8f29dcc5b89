"""The numbers drawn in the report figures are the numbers reported (figures kept open and read back)."""

import json

import numpy as np
import pytest

from medssl.eval import plots


@pytest.fixture
def figures(monkeypatch, tmp_path):
    """Every figure a plot function saves, left open for inspection."""
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig) or path)
    yield kept
    for fig in kept:
        plt.close(fig)


def test_pred_vs_true_scatters_true_on_x_and_titles_the_mean_absolute_error(figures, tmp_path):
    y, pred = np.array([20.0, 30.0, 40.0, 50.0]), np.array([21.0, 29.0, 48.0, 50.5])  # errors 1, 1, 8, 0.5
    plots.plot_pred_vs_true([("probe", y, pred)], tmp_path / "a.png")
    (ax,) = figures[0].axes
    assert ax.get_title() == "probe: MAE 2.62"  # mean 2.625 (the median would be 1.00)
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.c_[y, pred])


def test_confusion_matrix_shades_row_shares_and_prints_each_cell_in_its_place(figures, tmp_path):
    cm = [[8, 2, 0], [1, 1, 2], [0, 0, 6]]  # rows: true class
    plots.plot_confusion([("probe", cm, ["a", "b", "c"])], tmp_path / "c.png")
    (ax,) = figures[0].axes
    shade = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shade, np.asarray(cm, float) / np.sum(cm, axis=1, keepdims=True))
    printed = {(t.get_position()[1], t.get_position()[0]): int(t.get_text()) for t in ax.texts}  # (row, column)
    assert printed == {(i, j): cm[i][j] for i in range(3) for j in range(3)}


def test_fewshot_curve_draws_the_summary_means_at_the_fractions_and_the_chance_level(figures, tmp_path):
    summary = [{"fraction": 0.1, "n_subjects": 5, "mean": 0.61, "std": 0.02, "n_seeds": 3},
               {"fraction": 1.0, "n_subjects": 50, "mean": 0.83, "std": None, "n_seeds": 1}]
    curve = {"metric": "balanced_accuracy", "summary": summary, "chance": 1 / 3}
    plots.plot_fewshot({"pretrained": {"label": curve}}, tmp_path / "f.png")
    (ax,) = figures[0].axes
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(x, [10.0, 100.0])
    np.testing.assert_allclose(y, [0.61, 0.83])
    chance = [line for line in ax.lines if line.get_label() == "chance"]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(1 / 3)


def test_training_curves_draw_every_logged_step_and_the_validation_loss_as_validation(figures, tmp_path):
    rows = [{"step": s, "loss": 5.0 - s} for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    hist = [{"epoch": 1, "train_loss": 0.9, "val_loss": 0.7}, {"epoch": 2, "train_loss": 0.5, "val_loss": 0.6}]
    plots.plot_training_curves(tmp_path, {"age": hist}, tmp_path / "t.png")
    pre, ft = figures[0].axes
    np.testing.assert_array_equal(np.c_[pre.lines[0].get_data()], [[1, 4.0], [2, 3.0], [3, 2.0]])
    drawn = {line.get_label(): list(line.get_ydata()) for line in ft.lines}
    assert drawn == {"train loss": [0.9, 0.5], "validation loss": [0.7, 0.6]}


def test_the_age_figure_of_an_evaluation_titles_the_mae_its_metrics_report(figures, tmp_path):
    """End to end: run_protocol with an official validation split, then write_report; the scatter pairs each test age
    with its own prediction, so the title's MAE is the reported probe MAE."""
    from medssl.eval.driver import EvalOptions, run_protocol
    from medssl.eval.report import write_report

    rng = np.random.default_rng(0)
    n = 60
    x = rng.normal(size=(n, 4))
    feats = {"features": x.astype(np.float32), "age": 50 + 10 * x[:, 0] + rng.normal(size=n),
             "site": np.arange(n) % 2, "subject": np.array([f"s{i:02d}" for i in range(n)])}
    split = np.repeat(["train", "val", "test"], [30, 12, 18])
    res = run_protocol(EvalOptions(n_boot=0, map_method="none"), {"e": feats}, split == "train", {}, 0, ["age"],
                       val_mask=split == "val")
    write_report(tmp_path, dict(res, info={}))
    (ax,) = [a for fig in figures for a in fig.axes if a.get_title().startswith("e: MAE")]
    assert ax.get_title() == f"e: MAE {res['probes']['e']['age']['mae']:.2f}"
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], feats["age"][split == "test"])
