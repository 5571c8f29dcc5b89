"""Few-label curves: subject-level, nested, stratified subsets; fits see training rows only."""

import numpy as np
import pytest

from medssl.eval.fewshot import label_fraction_curve, subsample_subjects


def _table(n_subjects=100, seed=0):
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.arange(n_subjects), 2)  # two scans per subject
    cls = np.repeat(rng.integers(0, 3, n_subjects), 2)
    return subjects, cls


def test_subsets_are_whole_subjects_nested_and_sized():
    subjects, _ = _table()
    rows = np.arange(150)  # training rows: the first 75 subjects
    sizes = []
    prev = set()
    for fraction in (0.01, 0.1, 0.5, 1.0):
        sub = subsample_subjects(rows, subjects, fraction, seed=4)
        chosen = set(subjects[sub])
        assert set(sub) <= set(rows)
        assert all(np.sum(subjects[sub] == s) == 2 for s in chosen)  # both scans of a chosen subject
        assert prev <= chosen  # nested across fractions
        prev = chosen
        sizes.append(len(chosen))
    assert sizes == [3, 8, 38, 75]  # ceil(f·75), at least 3 subjects
    assert set(subjects[subsample_subjects(rows, subjects, 0.1, seed=5)]) != set(subjects[subsample_subjects(rows, subjects, 0.1, seed=4)])


def test_classification_subsets_keep_every_class():
    subjects, cls = _table()
    rows = np.arange(150)
    sub = subsample_subjects(rows, subjects, 0.01, seed=0, y=cls)
    counts = np.bincount(cls[sub][::2], minlength=3)  # one count per subject
    assert np.all(counts >= 2)
    with pytest.raises(ValueError, match="fraction"):
        subsample_subjects(rows, subjects, 0.0, seed=0)


def test_classification_subsets_are_stratified_per_class_nested_and_use_the_given_rows():
    """Per class, exactly min(n_c, max(2, ceil(f · n_c))) subjects are kept (n_c: the class's training subjects),
    nested across fractions. The training rows here are not the first rows of the table (subjects 40..99 in
    shuffled order, one of them labelled on its second scan only), so a class looked up by position in the full
    table instead of in ``rows`` gives other counts."""
    import math

    subjects, cls = _table(seed=1)
    rng = np.random.default_rng(2)
    rows = rng.permutation(np.flatnonzero(subjects >= 40))
    rows = rows[rows != np.flatnonzero(subjects == 41)[0]]  # subject 41: its second scan only
    subject_class = {int(s): int(c) for s, c in zip(subjects[rows], cls[rows])}
    n_class = np.bincount(list(subject_class.values()), minlength=3)
    prev = set()
    for fraction in (0.05, 0.2, 0.5, 1.0):
        sub = subsample_subjects(rows, subjects, fraction, seed=7, y=cls)
        chosen = set(subjects[sub].tolist())
        assert set(sub.tolist()) <= set(rows.tolist()) and prev <= chosen
        kept = np.bincount([subject_class[s] for s in chosen], minlength=3)
        assert kept.tolist() == [min(n, max(2, math.ceil(fraction * n))) for n in n_class], fraction
        prev = chosen


def test_curve_fits_only_on_training_rows_and_summarises_seeds():
    subjects, cls = _table()
    train_rows, test_rows = np.arange(150), np.arange(150, 200)
    calls = []

    def fit_score(rows, seed):
        assert not set(rows) & set(test_rows)
        calls.append((len(rows), seed))
        return {"mae": 10.0 / np.sqrt(len(rows)) + seed}

    curve = label_fraction_curve(fit_score, train_rows, subjects, "mae", (0.1, 1.0), seeds=(0, 1, 2))
    assert [c[1] for c in calls] == [0, 1, 2, 0]  # fraction 1.0: the same rows for every seed → one run
    s = {p["fraction"]: p for p in curve["summary"]}
    assert s[0.1]["n_seeds"] == 3 and s[0.1]["std"] == pytest.approx(1.0) and s[1.0]["n_subjects"] == 75
    assert s[1.0]["mean"] == pytest.approx(10 / np.sqrt(150))
    assert s[1.0]["n_seeds"] == 1 and s[1.0]["std"] is None  # one run: no spread, not a fake ± 0


def test_report_and_plot_of_a_one_seed_point_show_no_spread(tmp_path, monkeypatch):
    import matplotlib.axes

    from medssl.eval.plots import plot_fewshot
    from medssl.eval.report import _fmt

    drawn = []
    real = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, x, y, yerr=None, **kw: drawn.append(np.asarray(yerr, float)) or real(self, x, y, yerr=yerr, **kw))

    assert _fmt({"value": 0.9, "ci": None, "std": None}) == "0.900"
    assert _fmt({"value": 0.9, "ci": None, "std": 0.01}) == "0.900 ± 0.010"
    summary = [{"fraction": 0.1, "n_subjects": 5, "mean": 0.8, "std": 0.02, "n_seeds": 3},
               {"fraction": 1.0, "n_subjects": 50, "mean": 0.9, "std": None, "n_seeds": 1}]
    path = plot_fewshot({"pretrained": {"label": {"metric": "balanced_accuracy", "summary": summary}}}, tmp_path / "f.png")
    assert path.stat().st_size > 0
    assert len(drawn) == 1 and drawn[0][0] == 0.02 and np.isnan(drawn[0][1])  # no bar (not a zero-length one) at 100 %


@pytest.mark.parametrize("kwargs, message", [({"n_boot": -1}, "--n-boot must be >= 0"),
                                              ({"fractions": (0.1, 1.5)}, r"--fractions must be label fractions in \(0, 1\]"),
                                              ({"fractions": (0.0,)}, "--fractions")])
def test_evaluation_options_out_of_range_are_refused_before_any_work(kwargs, message):
    from medssl.eval.driver import EvalOptions

    with pytest.raises(ValueError, match=message):
        EvalOptions(**kwargs)


def test_one_target_or_external_site_given_as_a_string_is_that_name():
    """EvalOptions(targets="age") from Python was read letter by letter: "--targets: ['a', 'e', 'g'] not valid";
    external_sites="site-D" named the sites 's', 'i', … ."""
    from medssl.eval.driver import EvalOptions

    opts = EvalOptions(targets="age", external_sites="site-D")
    assert (opts.targets, opts.external_sites) == (("age",), ("site-D",))


def test_one_fraction_or_seed_given_as_a_number_is_that_one():
    """EvalOptions(fractions=0.1) stopped with "'float' object is not iterable", and seeds=3 was accepted and then
    failed in the few-shot protocol, after the features were computed ("'int' object is not iterable")."""
    from medssl.eval.driver import EvalOptions

    opts = EvalOptions(protocol="fewshot", fractions=0.1, seeds=3)
    assert (opts.fractions, opts.seeds) == ((0.1,), (3,))
    with pytest.raises(ValueError, match=r"--fractions must be label fractions in \(0, 1\], got \[2\]"):
        EvalOptions(fractions=2)


def test_subject_counts_round_up_and_the_subset_comes_back_sorted():
    """ceil(f · n) subjects, also where rounding to nearest would give fewer (0.3 · 75 = 22.5 → 23; 0.02 · 75 = 1.5
    → 2 raised to 3), and the returned rows are sorted whatever the order of ``rows``."""
    subjects, _ = _table()
    rows = np.random.default_rng(3).permutation(150)
    for fraction, n in ((0.3, 23), (0.7, 53), (0.02, 3)):
        sub = subsample_subjects(rows, subjects, fraction, seed=1)
        assert len(set(subjects[sub])) == n and np.all(np.diff(sub) > 0)


def test_the_full_fraction_is_the_probe_and_chance_counts_the_training_classes():
    """At fraction 1.0 the curve's point is the linear probe of the default protocol on the same rows (same seed),
    and a class with test scans only does not count in the curve's chance (docs: 1/#training classes)."""
    from medssl.eval.protocols import fewshot_protocol, probe_targets

    rng = np.random.default_rng(6)
    n = 90
    subjects = np.repeat(np.arange(n // 3), 3).astype(str)
    label = np.repeat(rng.integers(0, 2, n // 3), 3)
    train = np.arange(n) < 60
    label[~train & (np.arange(n) % 9 < 3)] = 2  # class 2: test subjects only
    age = np.repeat(rng.uniform(20, 80, n // 3), 3)
    x = rng.normal(size=(n, 5))
    x[:, 0] += (age - 50) / 15
    x[:, 1] += 2 * label
    feats = {"features": x, "age": age, "label": label, "subject": subjects}
    curves = fewshot_protocol(feats, train, ["age", "label"], fractions=(1.0,), seeds=(2, 0))
    probes = probe_targets(feats, train, ["age", "label"], seed=2, n_boot=0)
    assert curves["age"]["points"][0]["mae"] == pytest.approx(probes["age"]["mae"], rel=1e-12)
    point = curves["label"]["points"][0]
    assert point["balanced_accuracy"] == pytest.approx(probes["label"]["balanced_accuracy"], rel=1e-12)
    assert (point["n_subjects"], point["seed"]) == (20, 2)
    assert curves["label"]["chance"] == probes["label"]["chance"] == 0.5
