"""Report and compare figures are replaced whole: a write failing midway keeps the earlier PNG."""

import errno
import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from medssl.eval.compare import plot_compare
from medssl.eval.report import write_report


def _results(mae: float) -> dict:
    return {"protocol": "default", "info": {}, "vocab": {},
            "probes": {"pretrained": {"age": {"mae": mae, "r2": 0.5, "rmse": mae + 1, "pearson_r": 0.7,
                                              "pred": np.arange(3.0) + mae}}}, "test_age": np.arange(3.0)}


def _capture_figures(monkeypatch) -> list:
    """Replace Figure.savefig: keep each figure for inspection and write an empty file in its place, as
    savefig writes one (the report saves through atomic_write, which renames that file)."""
    saved = []
    monkeypatch.setattr(Figure, "savefig",
                        lambda fig, path, *a, **k: (saved.append(fig), open(path, "wb").close()))
    return saved


def test_a_figure_write_that_fails_midway_keeps_the_earlier_figure(tmp_path, monkeypatch):
    """The figures were saved in place: a full disk or kill mid-write left a truncated PNG beside the report
    (and a truncated comparison plot). Half of the new PNG is written, then ENOSPC: the earlier file stays."""
    for run in ("a", "b"):
        write_report(tmp_path / run, _results(5.0))
    cmp = plot_compare([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp.png")
    before = {p: p.read_bytes() for p in (tmp_path / "a" / "age_pred_vs_true.png", cmp)}
    real = Figure.savefig

    def torn_savefig(self, fname, *args, **kwargs):
        buf = io.BytesIO()
        real(self, buf, *args, format="png", **{k: v for k, v in kwargs.items() if k != "format"})
        with open(fname, "wb") as fh:
            fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (test)", str(fname))

    monkeypatch.setattr(Figure, "savefig", torn_savefig)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path / "a", _results(9.0))
    with pytest.raises(OSError, match="No space left"):
        plot_compare([tmp_path / "a", tmp_path / "b"], cmp)
    assert all(p.read_bytes() == data for p, data in before.items())
    assert not [p for p in tmp_path.rglob("*.tmp-*")]


def test_a_figure_that_fails_to_draw_leaves_metrics_and_report_of_the_same_evaluation(tmp_path, monkeypatch):
    """metrics.json was written before the figures were drawn: a figure that failed (or a kill while they were drawn)
    left the new metrics.json beside the earlier report.md. Both are now written after the figures."""
    import medssl.eval.report as report

    write_report(tmp_path, _results(5.0))
    before = {n: (tmp_path / n).read_text() for n in ("metrics.json", "report.md")}

    def fail(*args, **kwargs):
        raise RuntimeError("drawing failed (test)")

    monkeypatch.setattr(report.plots, "plot_pred_vs_true", fail)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(tmp_path, _results(7.0))
    assert {n: (tmp_path / n).read_text() for n in before} == before


def test_compare_plot_gives_each_run_one_colour_in_every_panel(tmp_path, monkeypatch):
    """Bars were coloured by position in each panel: with run "b" lacking the few-label metrics, run "c" was drawn
    in b's colour in those panels. Each column now has one colour over the whole figure, named in a legend."""
    from matplotlib.colors import to_hex

    for name in ("a", "b", "c"):
        r = _results(5.0)
        if name != "b":
            r["fewshot"] = {"pretrained": {"age": {"metric": "mae", "summary": [
                {"fraction": 0.5, "n_subjects": 10, "mean": 6.0, "std": 0.5}]}}}
        (tmp_path / name).mkdir()
        write_report(tmp_path / name, r)
    saved = _capture_figures(monkeypatch)
    plot_compare([tmp_path / n for n in ("a", "b", "c")], tmp_path / "cmp.png")
    fig = saved[0]
    fig.canvas.draw()  # tick labels are filled in at draw time
    colour, panels = {}, 0
    for ax in fig.axes:
        names = [t.get_text() for t in ax.get_xticklabels()]
        bars = [p for p in ax.patches if p.get_height() > 0]
        if not names or not bars:
            continue
        panels += 1
        assert len(names) == len(bars)
        for name, bar in zip(names, bars):
            colour.setdefault(name, set()).add(to_hex(bar.get_facecolor()))
    assert panels >= 2 and set(colour) == {"a", "b", "c"}
    assert all(len(c) == 1 for c in colour.values()), colour  # one colour per run, whatever panel
    assert len({next(iter(c)) for c in colour.values()}) == 3  # and different runs, different colours
    legend = fig.legends[0]
    named = {t.get_text(): to_hex(h.get_facecolor()) for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert named == {n: next(iter(c)) for n, c in colour.items()}


def test_compare_plot_titles_do_not_run_into_each_other(tmp_path, monkeypatch):
    """A fewshot evaluation compared with --random-init (2 bars a panel, 1.84 in wide): the title
    'label balanced acc. (chance 0.50) ↑ @ 10% labels (472 subj.)' ran over the next panel's title."""
    for name in ("a", "b"):
        r = _results(5.0)
        r["fewshot"] = {"pretrained": {"label": {"metric": "balanced_accuracy", "chance": 0.5, "summary": [
            {"fraction": f, "n_subjects": int(4708 * f), "mean": 0.7, "std": 0.02} for f in (0.01, 0.1, 1.0)]}}}
        (tmp_path / name).mkdir()
        write_report(tmp_path / name, r)
    saved = _capture_figures(monkeypatch)
    plot_compare([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = saved[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    assert len(boxes) > 4
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)


def test_embedding_map_has_no_age_panel_when_no_scan_has_an_age(tmp_path, monkeypatch):
    """PNG radiographs with a label table and no ages: the map showed a 'coloured by age' panel of
    grey dots beside an 'age (years)' colour bar from 0 to 1, an age scale the data do not have."""
    saved = _capture_figures(monkeypatch)
    xy = np.random.default_rng(0).normal(size=(12, 2))
    maps = {"xy": xy, "method": "tsne", "explained": None, "age": np.full(12, np.nan), "label": np.arange(12) % 2}
    r = {"protocol": "linear", "info": {}, "vocab": {"label": ["normal", "pneumonia"]}, "maps": {"pretrained": maps}}
    write_report(tmp_path, r)
    titles = [ax.get_title() for ax in saved[0].axes if ax.get_title()]
    assert titles == ["pretrained coloured by diagnosis"]
    assert not any("age" in ax.get_ylabel() for ax in saved[0].axes)  # no age colour bar
    maps["age"][3] = 40.0  # one scan with an age: the panel is drawn
    saved.clear()
    write_report(tmp_path, r)
    assert [ax.get_title() for ax in saved[0].axes if ax.get_title()][0] == "pretrained coloured by age"


def test_embedding_map_without_any_metadata_has_no_colour_bar(tmp_path, monkeypatch):
    """An unlabelled CT cohort (no age, site or label): each map was titled 'coloured by -' beside a colour bar
    from -0.1 to 0.1 that coloured nothing. Now one plain panel per encoder, titled with the encoder."""
    saved = _capture_figures(monkeypatch)
    rng = np.random.default_rng(0)
    maps = {enc: {"xy": rng.normal(size=(8, 2)), "method": "pca", "explained": np.array([0.5, 0.2]),
                  "age": np.full(8, np.nan)} for enc in ("pretrained", "random init")}
    write_report(tmp_path, {"protocol": "default", "info": {}, "maps": maps})
    fig = saved[0]
    assert [ax.get_title() for ax in fig.axes] == ["pretrained", "random init"]  # two panels, no colour bar axes
    assert [len(ax.collections[0].get_offsets()) for ax in fig.axes] == [8, 8]
    assert "![maps](embedding_map.png)" in (tmp_path / "report.md").read_text()


def test_compare_plot_with_random_init_pairs_shades_only_within_a_run(tmp_path, monkeypatch):
    """4 runs with --random-init (12 columns, tab20): colours were dealt in column order, so the light shade
    paired with run a's baseline column was run b's pretrained column. A random-init twin now takes the light
    shade of its own run's hue, and columns of different runs never share a hue."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    names = ("a", "b", "c", "d")
    for name in names:
        r = _results(5.0)
        r["probes"]["random init"] = {"age": dict(r["probes"]["pretrained"]["age"], mae=7.0)}
        r["baselines"] = {"mean_predictor_mae": 12.0}
        (tmp_path / name).mkdir()
        write_report(tmp_path / name, r)
    saved = _capture_figures(monkeypatch)
    plot_compare([tmp_path / n for n in names], tmp_path / "cmp.png", ("pretrained", "random init"))
    legend = saved[0].legends[0]
    named = {t.get_text(): to_hex(h.get_facecolor()) for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert len(named) == 12
    palette = [to_hex(c) for c in colormaps["tab20"].colors]
    hue = {col: palette.index(c) // 2 for col, c in named.items()}
    for n in names:
        assert palette.index(named[f"{n} [random init]"]) == palette.index(named[f"{n} [pretrained]"]) + 1
        assert hue[n] == hue[f"{n} [pretrained]"] == hue[f"{n} [random init]"]
    assert len({hue[n] for n in names}) == 4


def test_each_figure_gets_the_data_of_its_section(tmp_path, monkeypatch):
    """Spies on the figure functions: the OpenBHB internal and external panels pair each test set's own ages with its
    predictions; the confusion matrices' classes are named from the site vocabulary (probe and site protocol alike);
    the few-label curves and each fine-tuning history are drawn, and the report shows each figure."""
    from medssl.eval import report

    seen = {}
    for name in ("plot_pred_vs_true", "plot_confusion", "plot_fewshot"):
        monkeypatch.setattr(report.plots, name, lambda arg, path, *a, _n=name: seen.setdefault(_n, arg) or path)
    monkeypatch.setattr(report.plots, "plot_training_curves", lambda run, hist, path: seen.setdefault("hist", hist) or path)
    age_int, age_ext = np.array([30.0, 50.0, 70.0]), np.array([25.0, 85.0])
    o = {"challenge_metric": 6.0, "mae_age": 4.0, "rmse_age": 5.0, "bacc_site": 0.5, "ext_mae_age": 7.0,
         "site_chance": 0.5, "pred_int": age_int + 1, "pred_ext": age_ext - 2, "age_int": age_int, "age_ext": age_ext}
    cm = {"confusion": [[3, 1], [0, 4]], "classes": [2, 0], "balanced_accuracy": 0.9, "chance": 0.5}
    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2}]
    few = {"age": {"metric": "mae", "summary": [{"fraction": 0.5, "n_subjects": 4, "mean": 6.0, "std": 0.5}]}}
    r = {"protocol": "default", "info": {}, "vocab": {"site": ["Guys", "HH", "IOP"]}, "openbhb": {"e": o},
         "probes": {"e": {"site": dict(cm, f1_macro=0.9)}}, "site": {"e": {"prediction": cm}}, "fewshot": {"e": few},
         "finetune": {"e": {"age": {"mae": 3.0, "r2": 0.9, "rmse": 4.0, "pearson_r": 0.95, "history": history}}}}
    write_report(tmp_path, r)
    (t_int, y_int, p_int), (t_ext, y_ext, p_ext) = seen["plot_pred_vs_true"]
    assert (t_int, t_ext) == ("e internal", "e external")
    np.testing.assert_array_equal(np.c_[y_int, p_int], np.c_[age_int, age_int + 1])
    np.testing.assert_array_equal(np.c_[y_ext, p_ext], np.c_[age_ext, age_ext - 2])
    assert [names for _, _, names in seen["plot_confusion"]] == [["IOP", "Guys"], ["IOP", "Guys"]]
    assert seen["plot_fewshot"] == {"e": few} and seen["hist"] == {"e age": history}
    report_md = (tmp_path / "report.md").read_text()
    for figure in ("age_pred_vs_true.png", "site_confusion.png", "fewshot_curves.png", "training_curve.png"):
        assert f"]({figure})" in report_md


def test_embedding_maps_name_every_class_colour_age_on_a_scale_and_state_each_encoders_shares(tmp_path, monkeypatch):
    """The map of a single-site cohort (every site code 0) still has its site panel; the diagnosis legend names every
    class of the vocabulary up to the largest code; age is a colour scale in years; the heading names the map
    method and the PC shares are given for every encoder."""
    saved = _capture_figures(monkeypatch)
    rng = np.random.default_rng(0)
    maps = {enc: {"xy": rng.normal(size=(9, 2)), "method": "pca", "explained": np.array([share, 0.2]),
                  "age": np.linspace(20.0, 80.0, 9), "site": np.zeros(9, int), "label": np.arange(9) % 3}
            for enc, share in (("pretrained", 0.61), ("random init", 0.34))}
    r = {"protocol": "default", "info": {}, "vocab": {"site": ["Guys"], "label": ["CN", "MCI", "AD"]}, "maps": maps}
    write_report(tmp_path, r)
    fig = saved[0]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"{enc} coloured by {c}" for enc in maps for c in ("age", "site", "diagnosis")]
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend()]
    assert legends == [["Guys"], ["CN", "MCI", "AD"]] * 2
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "age (years)"]
    assert len(bars) == 2 and all(ax.get_ylim() == pytest.approx((20.0, 80.0)) for ax in bars)
    report_md = (tmp_path / "report.md").read_text()
    assert "### Embedding maps (PCA; a row per encoder)" in report_md
    assert "variance on PC1 / PC2: pretrained 61 % / 20 %; random init 34 % / 20 %." in report_md
    for m in maps.values():
        m["method"] = "tsne"
    write_report(tmp_path, r)
    assert "### Embedding maps (TSNE; a row per encoder)" in (tmp_path / "report.md").read_text()
