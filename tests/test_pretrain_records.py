"""Which training scans pretraining uses: scans lacking what the method learns from are listed, not coded -1."""

from pathlib import Path

import numpy as np
import pytest

from medssl.api import PreparedData
from medssl.train.pretrain_inputs import pretrain_indices
from medssl.config import ConfigError, load_config
from medssl.data.dataset import MetadataCoder
from medssl.data.manifest import Record


def _data():
    records = [Record(path=f"scan{i}.nii.gz", subject=f"s{i}", site=site, label=label, age=30.0 + i)
               for i, (site, label) in enumerate([("A", "ad"), ("B", ""), ("", "cn"), ("A", "cn")])]
    return PreparedData(records=records, images=np.zeros((4, 1, 2, 2)), train=[0, 1, 2, 3], test=[],
                        coder=MetadataCoder(records), skipped=[])


@pytest.mark.parametrize(("overrides", "kept", "reasons"), [
    (["method.name=simclr"], [0, 1, 2, 3], []),
    (["method.name=supinfonce", "method.label_column=label"], [0, 2, 3], ["['label']"]),
    (["method.name=supinfonce", "method.fairkl_weight=1.0"], [0, 1, 3], ["['site']"]),
    (["method.name=supinfonce", "method.label_column=label", "method.fairkl_weight=1.0"], [0, 3],
     ["['label']", "['site']"]),
    (["method.name=yaware", "method.fairkl_weight=1.0"], [0, 1, 3], ["['site']"]),
])
def test_scans_without_class_or_bias_labels_are_excluded_and_listed(tmp_path, overrides, kept, reasons):
    assert pretrain_indices(load_config(overrides=overrides), _data(), tmp_path) == kept
    listed = tmp_path / "excluded_from_pretraining.tsv"
    assert listed.exists() == bool(reasons)
    if reasons:
        rows = listed.read_text().splitlines()[1:]
        assert [row.split("\tmissing ")[1] for row in rows] == reasons


def test_no_scan_with_the_bias_column_is_a_config_error(tmp_path):
    data = _data()
    for r in data.records:
        r.site = ""
    with pytest.raises(ConfigError, match=r"bias_column='site' \(fairkl_weight > 0\), but none.*fairkl_weight=0"):
        pretrain_indices(load_config(overrides=["method.name=supinfonce", "method.fairkl_weight=1.0"]), data, tmp_path)


def test_fairkl_on_a_bias_column_with_one_value_says_it_removes_no_bias(tmp_path, capsys):
    """FairKL on site with a one-site cohort (IXI's shared copy: all HH) trained without a word, although every
    pair is bias-aligned and nothing is debiased; the run now says so (two sites: no note)."""
    cfg = load_config(overrides=["method.name=supinfonce", "method.fairkl_weight=1.0"])
    data = _data()
    for r in data.records:
        r.site = "HH"
    assert pretrain_indices(cfg, data, tmp_path) == [0, 1, 2, 3]
    out = capsys.readouterr().out
    assert "all 4 training scans have site 'HH'" in out and "method.fairkl_weight=0" in out
    pretrain_indices(cfg, _data(), tmp_path)  # sites A and B among the kept scans
    assert "FairKL has no bias" not in capsys.readouterr().out


def test_each_listed_scan_names_what_it_lacks_and_the_error_names_the_absent_column(tmp_path, capsys):
    """supinfonce + label_column=label + FairKL on AdrenalMNIST3D (labels on every scan, no site): every row of
    excluded_from_pretraining.tsv said 'missing ['label', 'site']', the console '1188 training scan(s) lack
    ['label', 'site']' and the error 'learns from label and site, but none has it': the label was never missing."""
    data = _data()
    for r in data.records:
        r.label, r.site = "cn", ""
    cfg = load_config(overrides=["method.name=supinfonce", "method.label_column=label", "method.fairkl_weight=1.0"])
    with pytest.raises(ConfigError, match=r"none of the 4 training scans of data card 'synthetic' has a value of 'site'") as e:
        pretrain_indices(cfg, data, tmp_path)
    assert "'label'" not in str(e.value).split("but none")[1]
    rows = (tmp_path / "excluded_from_pretraining.tsv").read_text().splitlines()[1:]
    assert rows and all(row.endswith("missing ['site']") for row in rows)
    assert "4 training scan(s) lack a value of ['site']" in capsys.readouterr().out
    mixed = _data()  # scan 1 lacks a label, scan 2 a site: each row says which
    pretrain_indices(cfg, mixed, tmp_path)
    rows = (tmp_path / "excluded_from_pretraining.tsv").read_text().splitlines()[1:]
    assert rows == ["scan1.nii.gz\tmissing ['label']", "scan2.nii.gz\tmissing ['site']"]


def test_a_list_of_excluded_scans_is_replaced_whole_or_not_at_all(tmp_path, disk_full_on):
    """excluded_from_pretraining.tsv was written in place: a write failing midway (full disk, kill) left half
    a list. The earlier list now stays whole."""
    pretrain_indices(load_config(overrides=["method.name=supinfonce", "method.label_column=label"]), _data(), tmp_path)
    before = (tmp_path / "excluded_from_pretraining.tsv").read_text()
    disk_full_on("excluded_from_pretraining")
    with pytest.raises(OSError, match="No space left"):
        pretrain_indices(load_config(overrides=["method.name=supinfonce", "method.fairkl_weight=1.0"]), _data(), tmp_path)
    assert (tmp_path / "excluded_from_pretraining.tsv").read_text() == before


@pytest.mark.parametrize("name", ["config.yaml", "skipped_files.json", "train_summary.json"])
def test_run_files_are_replaced_whole_or_not_at_all(small_cohort, tmp_path, monkeypatch, disk_full_on, name):
    """config.yaml, skipped_files.json and train_summary.json of a run were written in place: a write failing
    midway (full disk, kill) left half a file that evaluate / export / the user then read. Run twice into one
    folder (training itself replaced by a stub: no checkpoint, so the second run is allowed), the second with
    another config, another bad file and another summary, and its write of ``name`` failing halfway: the
    first run's file is still there, whole."""
    import shutil

    from medssl.api import pretrain
    from medssl.train.trainer import Trainer

    cohort = Path(shutil.copytree(small_cohort, tmp_path / "cohort"))
    (cohort / "sub-0003" / "anat" / "sub-0003_T1w.nii.gz").unlink()
    args = [f"data.root={cohort}", f"output_dir={tmp_path / 'run'}", "data.on_bad_file=skip", "data.shape=[8,8,8]",
            "augment.crop_size=[8,8,8]", "encoder.options.width=4", "method.name=simclr", "train.batch_size=4"]
    monkeypatch.setattr(Trainer, "fit", lambda self: {"steps": 1})
    pretrain(load_config(overrides=args), progress=False)
    before = (tmp_path / "run" / name).read_text()
    (cohort / "sub-0005" / "anat" / "sub-0005_T1w.nii.gz").unlink()
    monkeypatch.setattr(Trainer, "fit", lambda self: {"steps": 2})
    disk_full_on(Path(name).stem)
    with pytest.raises(OSError, match="No space left"):
        pretrain(load_config(overrides=[*args, "train.epochs=7"]), progress=False)
    assert (tmp_path / "run" / name).read_text() == before


class _Chosen(Exception):
    """Raised with the indices pretrain_indices returned: the run stops there."""


def test_under_ddp_only_rank_0_lists_and_prints_the_scans_left_out(small_cohort, tmp_path, monkeypatch, capsys):
    """Under torchrun every rank printed 'N training scan(s) lack a value …' and wrote the same
    excluded_from_pretraining.tsv. medssl.api.pretrain runs here as rank 0, then as rank 1, of 2 processes
    (init_distributed faked, no process group: the barriers wait for nobody), with one training scan's age
    removed, and stops once the scans are chosen: rank 0 prints and writes the list, rank 1 neither, and both
    train on the same scans."""
    import math

    import medssl.api as api
    from medssl.train import distributed

    real = api.pretrain_indices

    def first_scan_without_age(cfg, data, run_dir, *args, **kwargs):
        data.records[data.train[0]].age = math.nan
        raise _Chosen(real(cfg, data, run_dir, *args, **kwargs))
    monkeypatch.setattr(api, "pretrain_indices", first_scan_without_age)
    run, kept = tmp_path / "run", {}
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "init_distributed", lambda device, r=rank: (distributed.DistInfo(r, 2, r), device))
        cfg = load_config(overrides=[f"data.root={small_cohort}", f"output_dir={run}", "data.shape=[24,24,24]",
                                     "augment.crop_size=[20,20,20]", "train.batch_size=8", "encoder.options.width=8",
                                     "method.name=yaware", "train.progress=false"])
        with pytest.raises(_Chosen) as chosen:
            api.pretrain(cfg, progress=False)
        kept[rank], out = chosen.value.args[0], capsys.readouterr().out
        listed = run / "excluded_from_pretraining.tsv"
        if rank == 0:
            assert "1 training scan(s) lack a value of ['age']" in out and len(listed.read_text().splitlines()) == 2
            listed.unlink()
        else:
            assert "lack a value" not in out and not listed.exists()
    assert kept[0] == kept[1] and len(kept[0]) > 0


def test_without_report_the_same_scans_are_chosen_silently(tmp_path, capsys):
    """report=False (DDP ranks other than 0): the same indices, no list written, neither the list's line nor
    the one-bias-value note printed."""
    cfg = load_config(overrides=["method.name=supinfonce", "method.label_column=label", "method.fairkl_weight=1.0"])
    data = _data()
    for r in data.records:
        r.site = "HH"
    assert pretrain_indices(cfg, data, tmp_path / "quiet", report=False) == [0, 2, 3]
    assert capsys.readouterr().out == "" and not (tmp_path / "quiet").exists()
    assert pretrain_indices(cfg, data, tmp_path) == [0, 2, 3]
    out = capsys.readouterr().out
    assert "1 training scan(s) lack a value of ['label']" in out and "FairKL has no bias" in out


@pytest.mark.parametrize("second", [["method.name=simclr"], ["method.name=supinfonce", "method.label_column=label"]])
def test_a_list_left_by_an_earlier_attempt_does_not_outlive_it(tmp_path, second):
    """A first attempt whose scans all lack the label stops with the error that suggests a label-free method, and
    lists every scan in excluded_from_pretraining.tsv; no checkpoint was written, so the same output_dir is used
    again. The second attempt (simclr, or the table completed) trains on every scan, but the old list stayed and
    said they were left out. A reporting call now removes a list it does not replace."""
    data = _data()
    for r in data.records:
        r.label = ""
    with pytest.raises(ConfigError, match="label-free method"):
        pretrain_indices(load_config(overrides=["method.name=supinfonce", "method.label_column=label"]), data, tmp_path)
    listed = tmp_path / "excluded_from_pretraining.tsv"
    assert len(listed.read_text().splitlines()) == 5
    for r, label in zip(data.records, ["ad", "cn", "cn", "ad"]):
        r.label = label
    pretrain_indices(load_config(overrides=second), data, tmp_path, report=False)  # DDP ranks > 0 leave it to rank 0
    assert listed.exists()
    assert pretrain_indices(load_config(overrides=second), data, tmp_path) == [0, 1, 2, 3]
    assert not listed.exists()
