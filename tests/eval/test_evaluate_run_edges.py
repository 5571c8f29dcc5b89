"""`evaluate` on a tiny run pretrained with ``data.on_bad_file=skip`` and one truncated scan: the skipped file is
counted in the results, metrics.json and report (medssl.eval.report.write_report: counted, never named), and the
targets of the fine-tuning / few-shot protocols (found by mutating medssl/api.py: evaluate returning
``skipped_files`` empty, explicit targets replaced by the protocol's defaults, and the run's data.limit applied to
another card, let every test pass)."""

import json

import pytest
import torch

TINY = ("data.shape=[16,16,16]", "augment.crop_size=[14,14,14]", "train.epochs=1", "train.batch_size=4",
        "train.progress=false", "encoder.options.width=4", "data.test_fraction=0.3", "train.device=cpu",
        "method.name=simclr", "data.on_bad_file=skip", "eval.targets=[age]", "data.limit=11")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``(run folder, the truncated file)``; the run reads the first 11 of the cohort's 12 scans."""
    from medssl.api import pretrain
    from medssl.config import load_config
    from medssl.data.synthetic import write_synthetic_cohort

    tmp = tmp_path_factory.mktemp("skiprun")
    cohort = write_synthetic_cohort(tmp / "c", n_subjects=12, n_sites=2, shape=(16, 16, 16), seed=0, progress=False)
    bad = sorted(cohort.glob("sub-*/anat/*.nii.gz"))[3]
    bad.write_bytes(bad.read_bytes()[:400])  # a truncated .nii.gz
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the single-thread autouse fixture
    try:
        torch.manual_seed(0)
        return pretrain(load_config(None, [f"data.root={cohort}", f"output_dir={tmp / 'r'}", *TINY]), progress=False), bad
    finally:
        torch.set_num_threads(n)


@pytest.mark.slow  # pretrains and evaluates a tiny run (about 5 s on one thread)
def test_a_file_skipped_at_preparation_is_counted_in_the_evaluation(run):
    from medssl.api import evaluate
    from medssl.eval.driver import EvalOptions

    run, bad = run
    listed = json.loads((run / "skipped_files.json").read_text())
    assert [s["path"] for s in listed] == [str(bad)]
    results = evaluate(run, progress=False, options=EvalOptions(n_boot=0, random_init=False, map_method="none"))
    assert [s["path"] for s in results["skipped_files"]] == [str(bad)]
    assert json.loads((run / "metrics.json").read_text())["n_skipped_files"] == 1
    report = (run / "report.md").read_text()
    assert "## Skipped files" in report and "1 file(s) were skipped" in report and bad.name not in report


@pytest.mark.slow
def test_few_shot_targets_default_to_the_downstream_tasks_and_explicit_ones_are_kept(run):
    """docs/evaluation.md: without --targets, fewshot and finetune evaluate eval.targets ([age] here) without site and
    with label when the data have labels; --targets is taken as given, site included."""
    from medssl.api import evaluate
    from medssl.eval.driver import EvalOptions

    run, _ = run
    opts = dict(protocol="fewshot", n_boot=0, random_init=False, map_method="none", fractions=(1.0,), seeds=(0,))
    default = evaluate(run, progress=False, options=EvalOptions(**opts))
    assert default["info"]["targets"] == "age, label" and set(default["fewshot"]["pretrained"]) == {"age", "label"}
    chosen = evaluate(run, progress=False, options=EvalOptions(**opts, targets=("site",)))
    assert chosen["info"]["targets"] == "site" and set(chosen["fewshot"]["pretrained"]) == {"site"}


@pytest.mark.slow
def test_the_runs_data_limit_does_not_apply_to_another_card(run):
    """docs/evaluation.md: --data CARD evaluates every record of that card; the run's data.limit (its first 11
    scans) was for its own data. The truncated scan is skipped in both."""
    from medssl.api import evaluate
    from medssl.data.manifest import read_manifest
    from medssl.eval.driver import EvalOptions

    run, bad = run
    cohort = bad.parents[2]
    assert len(read_manifest(run / "manifest.tsv")) == 11
    res = evaluate(run, progress=False, data="synthetic", root=str(cohort),
                   options=EvalOptions(n_boot=0, random_init=False, map_method="none"))
    out = run / "eval-default-synthetic"
    assert res["info"]["output directory"] == str(out) and len(read_manifest(out / "manifest.tsv")) == 12
    assert res["info"]["train subjects"] + res["info"]["test subjects"] == 11 and len(res["skipped_files"]) == 1
