"""`medssl export RUN` takes the run's latest checkpoint (export_run's docstring), not an older one, and refuses one
that another run wrote or whose weights do not fit the run."""

import json

import pytest
import torch

import medssl
from medssl.api import load_run_encoder, pretrain
from medssl.config import load_config
from medssl.export import export_run, read_spec
from medssl.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, write_atomic


def test_export_takes_the_latest_checkpoint_of_the_run(small_cohort, tmp_path):
    run = tmp_path / "run"
    pretrain(load_config(None, [f"data.root={small_cohort}", f"output_dir={run}", "data.shape=[24,24,24]",
                                "augment.preset=none", "augment.crop_size=[16,16,16]", "train.epochs=1",
                                "train.batch_size=8", "train.progress=false", "data.test_fraction=0.3",
                                "encoder.name=resnet10", "encoder.options={width: 2}",
                                "method.loss={temperature: 0.5}"]), progress=False)
    latest = list_checkpoints(run / "checkpoints")[-1]
    state = load_checkpoint(latest)
    assert state["step"] > 1
    older = {**state, "step": 1, "model": {k: torch.zeros_like(v) for k, v in state["model"].items()}}
    write_atomic(older, run / "checkpoints" / "step-1.pt")  # an earlier checkpoint, kept by the run
    assert list_checkpoints(run / "checkpoints")[0].name == "step-1.pt"
    out = export_run(run, tmp_path / "export")
    assert read_spec(out)["pretraining"]["checkpoint_step"] == state["step"]
    assert read_spec(out)["pretraining"]["loss"] == {"temperature": 0.5}
    _, trained = load_run_encoder(run)
    x = torch.randn(2, 1, 24, 24, 24)
    with torch.no_grad():
        assert torch.equal(medssl.load_encoder(out)(x), trained.eval()(x))
    # another run's checkpoint (its config differs in what shapes training), and weights that do not fit the run
    foreign = {**state, "config": json.dumps({**json.loads(state["config"]), "seed": 12345})}
    write_atomic(foreign, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"seed=12345; this run has seed=0\. It is not a checkpoint of"):
        export_run(run, tmp_path / "export2", checkpoint=tmp_path / "foreign.pt")
    first = next(iter(state["model"]))
    misfit = {**state, "model": {**state["model"], first: torch.zeros(3)}}
    write_atomic(misfit, tmp_path / "misfit.pt")
    with pytest.raises(CheckpointError, match="misfit.pt: weights do not fit the run's config"):
        export_run(run, tmp_path / "export2", checkpoint=tmp_path / "misfit.pt")
    assert not (tmp_path / "export2").exists()
