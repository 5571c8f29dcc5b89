"""Which training scans pretraining uses: scans lacking what the method learns from are listed, not coded -1."""

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


@pytest.mark.parametrize(("overrides", "kept", "reason"), [
    (["method.name=simclr"], [0, 1, 2, 3], None),
    (["method.name=supinfonce", "method.label_column=label"], [0, 2, 3], "['label']"),
    (["method.name=supinfonce", "method.fairkl_weight=1.0"], [0, 1, 3], "['site']"),
    (["method.name=supinfonce", "method.label_column=label", "method.fairkl_weight=1.0"], [0, 3], "['label', 'site']"),
    (["method.name=yaware", "method.fairkl_weight=1.0"], [0, 1, 3], "['age', 'site']"),
])
def test_scans_without_class_or_bias_labels_are_excluded_and_listed(tmp_path, overrides, kept, reason):
    assert pretrain_indices(load_config(overrides=overrides), _data(), tmp_path) == kept
    listed = tmp_path / "excluded_from_pretraining.tsv"
    assert listed.exists() == (reason is not None)
    if reason:
        rows = listed.read_text().splitlines()[1:]
        assert len(rows) == 4 - len(kept) and all(row.endswith(f"missing {reason}") for row in rows)


def test_no_scan_with_the_bias_column_is_a_config_error(tmp_path):
    data = _data()
    for r in data.records:
        r.site = ""
    with pytest.raises(ConfigError, match=r"bias_column='site' \(fairkl_weight > 0\), but none.*fairkl_weight=0"):
        pretrain_indices(load_config(overrides=["method.name=supinfonce", "method.fairkl_weight=1.0"]), data, tmp_path)
