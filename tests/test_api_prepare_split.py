"""prepare_data draws the run's split with the run's seed, stratified by site and label (api.prepare_data's
docstring, docs/data.md): every (site, label) group of two or more subjects gets floor or ceil of test_fraction of
its subjects as test subjects (at least one), and another seed draws another split. Stratified by site alone, a
rare diagnosis (AD: 3 of 48 subjects here) can leave a site with no AD test subject."""

import math
from collections import Counter

import pytest

FRACTION = 0.25


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from medssl.data.synthetic import write_synthetic_cohort

    return write_synthetic_cohort(tmp_path_factory.mktemp("split") / "c", n_subjects=48, n_sites=2, shape=(16, 16, 16),
                                  seed=0, progress=False)


def _split(cohort, tmp_path, seed):
    from medssl.api import REPO_ROOT, prepare_data
    from medssl.config import load_config

    cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "simclr.yaml",
                      [f"data.root={cohort}", "data.shape=[16,16,16]", "augment.crop_size=[14,14,14]",
                       f"data.cache_dir={tmp_path / 'cache'}",
                       f"seed={seed}", f"data.test_fraction={FRACTION}"])
    data = prepare_data(cfg, tmp_path / f"run{seed}", progress=False)
    return {r.subject: (r.site, r.label, r.split) for r in data.records}


def test_the_split_is_seeded_by_the_run_and_stratified_by_site_and_label(cohort, tmp_path):
    splits = {seed: _split(cohort, tmp_path, seed) for seed in (0, 1)}
    for split in splits.values():
        n = Counter((site, label) for site, label, _ in split.values())
        n_test = Counter((site, label) for site, label, s in split.values() if s == "test")
        assert len(n) == 4 and sorted(n.values())[1] >= 2  # both sites hold both diagnoses (AD is rare)
        for group, size in n.items():
            low, high = math.floor(FRACTION * size), math.ceil(FRACTION * size)
            assert n_test[group] in ({low, high} if size == 1 else {max(1, low), max(1, high)}), (group, size)
        assert sum(n_test.values()) == round(FRACTION * len(split))
    assert splits[0] != splits[1]


def test_a_stale_list_of_skipped_files_is_removed_when_no_file_is_skipped(cohort, tmp_path):
    """An earlier attempt's skipped_files.json would name files this run now uses (prepare_data's docstring: the
    list is written when files are skipped)."""
    run = tmp_path / "run0"
    run.mkdir()
    (run / "skipped_files.json").write_text('[{"path": "sub-000/anat/sub-000_T1w.nii.gz", "reason": "unreadable"}]')
    _split(cohort, tmp_path, 0)
    assert not (run / "skipped_files.json").exists() and (run / "manifest.tsv").is_file()
