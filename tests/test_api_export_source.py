"""Evaluating an encoder export (api._evaluation_source / `medssl evaluate EXPORT`): the data card is required, the
export's recorded input (shape, spacing, normalisation) and evaluation targets become the evaluation's settings,
and the report goes beside the export, never into it (docs/evaluation.md, `evaluate`'s docstring)."""

from pathlib import Path

import torch

CARD = str(Path(__file__).resolve().parents[1] / "data_cards" / "synthetic.yaml")


def _export(out: Path, **input_spec) -> Path:
    from medssl.encoders import build_encoder
    from medssl.export import save_encoder

    torch.manual_seed(0)
    args = {"spatial_dims": 3, "in_channels": 1, "width": 4}
    return save_encoder(build_encoder("resnet18", **args), out, "resnet18", args, input_spec,
                        evaluation={"targets": ["age", "sex"]})


def test_an_export_needs_a_data_card(tmp_path, capsys):
    from medssl.cli import main

    export = _export(tmp_path / "export", spatial_dims=3, in_channels=1, shape=[16, 16, 16])
    assert main(["evaluate", str(export)]) == 2
    err = capsys.readouterr().err
    assert "is an encoder export: pass --data CARD" in err and not list(tmp_path.glob("export-eval*"))


def test_the_export_input_and_targets_become_the_evaluation_settings_and_the_report_goes_beside_it(tmp_path):
    from medssl.api import _evaluation_source

    export = _export(tmp_path / "export", spatial_dims=3, in_channels=1, shape=[16, 16, 24], spacing_mm=[2.0, 2.0, 1.5],
                     normalise="minmax")
    cfg, encoder, prep_dir, out_dir, kind, _ = _evaluation_source(export, "site", CARD, "/data/cohort")
    assert kind == "export" and cfg.encoder.name == "resnet18" and cfg.encoder.spatial_dims == 3
    assert cfg.data.shape == [16, 16, 24] and cfg.data.spacing == [2.0, 2.0, 1.5] and cfg.data.normalise == "minmax"
    assert cfg.eval.targets == ["age", "sex"] and cfg.data.card == CARD and cfg.data.root == "/data/cohort"
    assert out_dir == prep_dir == tmp_path / "export-eval-site-synthetic"
    assert encoder(torch.zeros(1, 1, 16, 16, 24)).shape == (1, encoder.out_dim)
    chosen = tmp_path / "elsewhere"
    assert _evaluation_source(export, "site", CARD, None, str(chosen))[2:4] == (chosen, chosen)
