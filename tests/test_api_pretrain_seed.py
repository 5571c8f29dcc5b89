"""A run's weights follow its seed, not whatever the process drew before (api.pretrain seeds torch before it builds
the encoder): the same config twice gives the same checkpoint, another seed other initial weights."""

import torch

TINY = ("data.shape=[16,16,16]", "augment.crop_size=[14,14,14]", "train.epochs=1", "train.batch_size=8",
        "train.progress=false", "encoder.options.width=4", "train.device=cpu")


def test_the_same_seed_gives_the_same_weights_whatever_the_process_drew_before(tmp_path):
    from medssl.api import REPO_ROOT, pretrain
    from medssl.config import load_config
    from medssl.data.synthetic import write_synthetic_cohort
    from medssl.train.checkpoint import list_checkpoints, load_checkpoint

    cohort = write_synthetic_cohort(tmp_path / "c", n_subjects=12, n_sites=2, shape=(16, 16, 16), seed=0, progress=False)

    def weights(name, seed):
        cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "simclr.yaml",
                          [f"data.root={cohort}", f"output_dir={tmp_path / name}", f"seed={seed}", *TINY])
        run = pretrain(cfg, progress=False)
        return load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["model"]

    a = weights("a", 0)
    torch.rand(100)  # the process's random state moves on
    b, other = weights("b", 0), weights("c", 1)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)
