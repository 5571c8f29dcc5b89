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


def test_pred_vs_true_panels_share_one_scale_with_the_identity_line_and_skip_empty_panels(figures, tmp_path):
    """Every panel has the same x and y limits, holding every true and predicted value of every panel strictly inside
    (predictions outside the true range too); each draws the dashed identity line across them; a panel without scans
    is left out, and with none there is no figure."""
    a = ("probe", np.array([30.0, 40.0]), np.array([10.0, 45.0]))  # a prediction far below the true ages
    b = ("fine-tuned", np.array([60.0, 70.0]), np.array([90.0, 62.0]))
    plots.plot_pred_vs_true([a, ("empty", np.array([]), np.array([])), b], tmp_path / "a.png")
    axes = figures[0].axes
    assert [ax.get_title().split(":")[0] for ax in axes] == ["probe", "fine-tuned"]
    for ax, (_, y, pred) in zip(axes, (a, b)):
        np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.c_[y, pred])  # each scan its own point
        lo, hi = ax.get_xlim()
        assert ax.get_ylim() == (lo, hi) and axes[0].get_xlim() == (lo, hi) and lo < 10.0 and hi > 90.0
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("true (years)", "predicted (years)")
        (line,) = ax.lines
        np.testing.assert_allclose(line.get_xdata(), [lo, hi])
        np.testing.assert_allclose(line.get_ydata(), [lo, hi])
        assert line.get_linestyle() == "--"
    assert plots.plot_pred_vs_true([("empty", [], [])], tmp_path / "b.png") is None and len(figures) == 1


def test_confusion_matrix_names_rows_and_columns_in_class_order_and_an_empty_row_stays_white(figures, tmp_path):
    """Rows are the true classes and columns the predicted ones, both labelled with the class names in order; a class
    with no test scan (a row of zeros) is shaded 0, not NaN; the colour scale is the row share 0…1, and a cell above
    0.6 of its row gets white text."""
    cm = [[5, 1, 0], [0, 0, 0], [1, 0, 9]]
    plots.plot_confusion([("probe", cm, ["Guys", "HH", "IOP"])], tmp_path / "c.png")
    (ax,) = figures[0].axes
    figures[0].canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Guys", "HH", "IOP"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Guys", "HH", "IOP"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    image = ax.images[0]
    np.testing.assert_array_equal(np.asarray(image.get_array())[1], [0.0, 0.0, 0.0])
    assert image.get_clim() == (0, 1)
    white = {(int(t.get_position()[1]), int(t.get_position()[0])) for t in ax.texts if t.get_color() == "white"}
    assert white == {(0, 0), (2, 2)}  # 5/6 and 9/10 of their rows; 1/6 and 1/10 are not
    assert plots.plot_confusion([], tmp_path / "d.png") is None


def test_fewshot_curve_draws_each_encoder_with_its_seed_sd_on_a_log_axis_ticked_at_the_fractions(figures, tmp_path):
    """Error bars of ± the SD over seeds (none where a fraction has a single seed), one line per encoder named after
    it, a panel per target, log-scaled fractions ticked at the fractions that were run, the metric on the y axis."""
    summary = [{"fraction": 0.01, "n_subjects": 3, "mean": 9.0, "std": 1.5},
               {"fraction": 0.1, "n_subjects": 30, "mean": 7.0, "std": 0.5},
               {"fraction": 1.0, "n_subjects": 300, "mean": 5.0, "std": None}]
    curves = {enc: {"age": {"metric": "mae", "summary": summary}} for enc in ("pretrained", "random init")}
    curves["pretrained"]["label"] = {"metric": "balanced_accuracy", "summary": summary[1:2], "chance": 0.5}
    plots.plot_fewshot(curves, tmp_path / "f.png")
    age, label = figures[0].axes
    assert (age.get_title(), label.get_title()) == ("age", "label")
    assert (age.get_ylabel(), label.get_ylabel()) == ("MAE (years) ↓", "balanced accuracy ↑")
    assert age.get_xscale() == "log" and [t.get_text() for t in age.get_xticklabels()] == ["1%", "10%", "100%"]
    assert [t.get_text() for t in age.get_legend().get_texts()] == ["pretrained", "random init"]
    bars = age.containers[0].lines[2][0].get_segments()  # the vertical error bars of the first encoder
    assert [(s[0][0], s[0][1], s[1][1]) for s in bars if len(s)] == [(1.0, 7.5, 10.5), (10.0, 6.5, 7.5)]


def test_training_curves_leave_out_rows_that_log_no_loss(figures, tmp_path):
    """metrics.jsonl also holds the monitor's rows (step and monitor/… metrics, no loss): the pretraining curve is the
    loss rows only; a fine-tuning panel has its epochs on x and both losses named in a legend."""
    rows = [{"step": 1, "loss": 4.0}, {"step": 1, "monitor/knn": 0.3}, {"step": 2, "loss": 3.0}, {"epoch": 1, "lr": 0.1}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    hist = [{"epoch": 1, "train_loss": 0.9, "val_loss": 0.7}]
    plots.plot_training_curves(tmp_path, {"pretrained age": hist}, tmp_path / "t.png")
    pre, ft = figures[0].axes
    np.testing.assert_array_equal(np.c_[pre.lines[0].get_data()], [[1, 4.0], [2, 3.0]])
    assert (pre.get_xlabel(), ft.get_xlabel(), ft.get_title()) == ("step", "epoch", "fine-tuning pretrained age")
    assert [t.get_text() for t in ft.get_legend().get_texts()] == ["train loss", "validation loss"]
    assert ft.lines[0].get_marker() == "o"  # a lone epoch is a visible point
    assert plots.plot_training_curves(tmp_path / "none", {"e age": []}, tmp_path / "u.png") is None


def test_report_figures_are_saved_at_100_dpi(tmp_path):
    """One pred-vs-true panel is 4.0 × 3.8 in: 400 × 380 pixels."""
    import matplotlib.image

    path = plots.plot_pred_vs_true([("probe", np.array([20.0, 60.0]), np.array([25.0, 55.0]))], tmp_path / "a.png")
    assert matplotlib.image.imread(path).shape[:2] == (380, 400)


def test_fewshot_ticks_are_every_encoders_fractions(figures, tmp_path):
    """Encoders evaluated at different fractions (runs merged from two evaluations) each get their points ticked,
    not only the last encoder's."""
    point = lambda fraction: {"fraction": fraction, "n_subjects": 1, "mean": 0.7, "std": None}  # noqa: E731
    curves = {"pretrained": {"label": {"metric": "balanced_accuracy", "summary": [point(0.05), point(1.0)]}},
              "random init": {"label": {"metric": "balanced_accuracy", "summary": [point(0.1), point(1.0)]}}}
    plots.plot_fewshot(curves, tmp_path / "f.png")
    assert [t.get_text() for t in figures[0].axes[0].get_xticklabels()] == ["5%", "10%", "100%"]
