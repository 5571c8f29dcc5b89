"""A file skipped as unreadable (``data.on_bad_file=skip``) is counted in the evaluation's results, metrics.json and
report (medssl.eval.report.write_report: counted, never named), not only in the run's skipped_files.json (found by
mutating medssl/api.py: evaluate returning ``skipped_files`` empty let every test pass)."""

import json

import pytest
import torch

TINY = ("data.shape=[16,16,16]", "augment.crop_size=[14,14,14]", "train.epochs=1", "train.batch_size=4",
        "train.progress=false", "encoder.options.width=4", "data.test_fraction=0.3", "train.device=cpu",
        "method.name=simclr", "data.on_bad_file=skip", "eval.targets=[age]")


@pytest.mark.slow  # pretrains and evaluates a tiny run (about 5 s on one thread)
def test_a_file_skipped_at_preparation_is_counted_in_the_evaluation(tmp_path):
    from medssl.api import evaluate, pretrain
    from medssl.config import load_config
    from medssl.data.synthetic import write_synthetic_cohort
    from medssl.eval.driver import EvalOptions

    cohort = write_synthetic_cohort(tmp_path / "c", n_subjects=12, n_sites=2, shape=(16, 16, 16), seed=0, progress=False)
    bad = sorted(cohort.glob("sub-*/anat/*.nii.gz"))[3]
    bad.write_bytes(bad.read_bytes()[:400])  # a truncated .nii.gz
    torch.manual_seed(0)
    run = pretrain(load_config(None, [f"data.root={cohort}", f"output_dir={tmp_path / 'r'}", *TINY]), progress=False)
    listed = json.loads((run / "skipped_files.json").read_text())
    assert [s["path"] for s in listed] == [str(bad)]
    results = evaluate(run, progress=False, options=EvalOptions(n_boot=0, random_init=False, map_method="none"))
    assert [s["path"] for s in results["skipped_files"]] == [s["path"] for s in listed]
    assert json.loads((run / "metrics.json").read_text())["n_skipped_files"] == 1
    report = (run / "report.md").read_text()
    assert "## Skipped files" in report and "1 file(s) were skipped" in report and bad.name not in report
