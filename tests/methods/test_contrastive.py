"""ContrastiveMethod.embed: one encoder pass over all views, or one pass per view."""

import pytest
import torch
from torch import nn

from medssl.losses import NTXentLoss
from medssl.methods import ContrastiveMethod
from medssl.transforms.views import build_view_pipeline


class BatchNormEncoder(nn.Module):
    """Conv → BatchNorm → mean pool: its output depends on which samples share the batch."""

    spatial_dims, in_channels, out_dim = 3, 1, 6

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv3d(1, 6, 3, padding=1), nn.BatchNorm3d(6)

    def forward(self, x):
        return self.bn(self.conv(x)).relu().mean(dim=(2, 3, 4))


def _method(views_per_pass):
    torch.manual_seed(0)
    views = build_view_pipeline("none", 3, (8, 8, 8))
    return ContrastiveMethod(BatchNormEncoder(), NTXentLoss(), views, proj_hidden_dim=12, proj_dim=4,
                             views_per_pass=views_per_pass)


def test_separate_passes_normalise_each_view_on_its_own():
    views = torch.randn(5, 2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1))
    joint, separate = _method("joint"), _method("separate")
    separate.load_state_dict(joint.state_dict())
    z_sep = separate.embed(views)
    assert z_sep.shape == (5, 2, 4)
    fresh = _method("joint")  # same weights, fresh BatchNorm running statistics
    for v in range(2):  # naive: view v alone through encoder and head, batch statistics of those 5 samples only
        assert torch.allclose(z_sep[:, v], fresh.projector(fresh.encoder(views[:, v])), atol=1e-6)
    z_joint = joint.embed(views)
    assert not torch.allclose(z_joint, z_sep, atol=1e-3), "BatchNorm over 10 views must differ from over 5"
    separate.load_state_dict(joint.state_dict())  # the same running statistics (two updates differ from one)
    joint.eval(), separate.eval()  # running statistics: the batch grouping no longer matters
    assert torch.allclose(joint.embed(views), separate.embed(views), atol=1e-6)


def test_unknown_views_per_pass_is_refused():
    with pytest.raises(ValueError, match="views_per_pass"):
        _method("both")


def _supervised_method(fairkl_weight=0.0):
    from medssl.losses import EpsSupInfoNCELoss, FairKLLoss

    torch.manual_seed(0)
    views = build_view_pipeline("none", 3, (8, 8, 8))
    return ContrastiveMethod(BatchNormEncoder(), EpsSupInfoNCELoss(), views, proj_hidden_dim=12, proj_dim=4,
                             label_keys=["label"], fairkl=FairKLLoss(), fairkl_weight=fairkl_weight)


def _batch(label, site):
    return {"image": torch.randn(4, 1, 8, 8, 8, generator=torch.Generator().manual_seed(2)),
            "label": torch.tensor(label), "site": torch.tensor(site)}


def test_missing_class_or_bias_codes_are_refused_not_merged_into_one_class():
    # MetadataCoder codes a missing label/site as -1; used as a class, every unlabelled scan became a positive
    # of every other one (and, for FairKL, one more "site").
    g = torch.Generator().manual_seed(3)
    out = _supervised_method(1.0).training_step(_batch([0, 1, 0, 1], [0, 0, 1, 1]), g)
    assert torch.isfinite(out.loss) and "fairkl" in out.logs
    with pytest.raises(ValueError, match=r"class codes are missing .* in rows \[1, 2\]"):
        _supervised_method().training_step(_batch([0, -1, -1, 1], [0, 0, 1, 1]), g)
    with pytest.raises(ValueError, match=r"FairKLLoss \(bias_labels\): class codes are missing .* in rows \[1\]"):
        _supervised_method(1.0).training_step(_batch([0, 1, 0, 1], [0, -1, 1, 1]), g)


@pytest.mark.parametrize("weight", [0.0, 0.5, 2.0])
def test_supinfonce_with_fairkl_is_the_weighted_sum_of_the_two_losses_on_the_same_embeddings(weight):
    """eps-SupInfoNCE + w · FairKL(z, class labels, sites), both on the one embedding of the step (FairKL's
    positives are the classes, not each sample alone); w = 0 is the plain contrastive loss."""
    from medssl.losses import EpsSupInfoNCELoss, FairKLLoss

    batch = _batch([0, 1, 0, 1], [0, 0, 1, 1])
    method = _supervised_method(weight)
    out = method.training_step(batch, torch.Generator().manual_seed(3))
    with torch.no_grad():
        z = method.embed(method.make_views(batch["image"], torch.Generator().manual_seed(3)))
    contrastive = EpsSupInfoNCELoss()(z, batch["label"])
    fair = FairKLLoss()(z, batch["label"], batch["site"])
    assert not torch.allclose(fair, FairKLLoss()(z, None, batch["site"]))  # the class targets matter here
    assert out.logs["contrastive"] == pytest.approx(contrastive.item(), rel=1e-6)
    assert out.loss.item() == pytest.approx((contrastive + weight * fair).item(), rel=1e-6)
    assert ("fairkl" in out.logs) == (weight > 0)
    assert all(torch.is_tensor(v) and not v.requires_grad for v in out.logs.values())  # read by the trainer, not here
    if weight:
        assert out.logs["fairkl"] == pytest.approx(fair.item(), rel=1e-6)


def test_yaware_with_fairkl_gives_fairkl_each_sample_as_its_own_class():
    """With continuous metadata (ages) there are no classes: FairKL's positives are the other view of the
    same sample (targets None), never ages read as class codes."""
    from medssl.losses import FairKLLoss, YAwareLoss

    torch.manual_seed(0)
    method = ContrastiveMethod(BatchNormEncoder(), YAwareLoss(0.1, 5.0), build_view_pipeline("none", 3, (8, 8, 8)),
                               proj_hidden_dim=12, proj_dim=4, label_keys=["age"], continuous=True,
                               fairkl=FairKLLoss(), fairkl_weight=0.7)
    batch = {**_batch([0, 0, 0, 0], [0, 1, 0, 1]), "age": torch.tensor([30.0, 30.0, 50.0, 50.0])}
    out = method.training_step(batch, torch.Generator().manual_seed(4))
    with torch.no_grad():
        z = method.embed(method.make_views(batch["image"], torch.Generator().manual_seed(4)))
    fair = FairKLLoss()(z, None, batch["site"])
    assert not torch.allclose(fair, FairKLLoss()(z, batch["age"].long(), batch["site"]))  # ages as classes differ
    expected = YAwareLoss(0.1, 5.0)(z, batch["age"][:, None]) + 0.7 * fair
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_metadata_columns_reach_the_kernel_in_the_configured_order():
    """method.metadata=[age, sex] with one bandwidth per column: the loss gets (B, 2) metadata with age first, so
    sigma 5 applies to ages and 0.5 to sex codes (the same columns swapped give another loss)."""
    from medssl.losses import YAwareLoss

    torch.manual_seed(0)
    loss = YAwareLoss(0.1, [5.0, 0.5])
    method = ContrastiveMethod(BatchNormEncoder(), loss, build_view_pipeline("none", 3, (8, 8, 8)), proj_hidden_dim=12,
                               proj_dim=4, label_keys=["age", "sex"], continuous=True)
    batch = {**_batch([0, 0, 0, 0], [0, 1, 0, 1]), "age": torch.tensor([30.0, 33.0, 50.0, 52.0]),
             "sex": torch.tensor([0, 1, 1, 0])}
    out = method.training_step(batch, torch.Generator().manual_seed(4))
    with torch.no_grad():
        z = method.embed(method.make_views(batch["image"], torch.Generator().manual_seed(4)))
    age, sex = batch["age"], batch["sex"].float()
    assert out.loss.item() == pytest.approx(loss(z, torch.stack([age, sex], 1)).item(), rel=1e-6)
    assert out.loss.item() != pytest.approx(loss(z, torch.stack([sex, age], 1)).item(), rel=1e-3)



KERNEL_METHODS = ["yaware", "contrastive_regression"]
SMALL = ["encoder.options={width: 2}", "augment.preset=none", "augment.crop_size=[8,8,8]", "data.shape=[8,8,8]"]


@pytest.mark.parametrize("method", KERNEL_METHODS)
def test_kernel_method_without_metadata_is_refused_not_trained_as_ntxent(method):
    """With method.metadata=[] the kernel loss got labels=None, i.e. identity weights: plain NT-Xent, silently."""
    import re

    from medssl.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=re.escape(f"method.metadata is empty: {method} weights positives by a "
                                                    "kernel on it")):
        load_config(None, [f"method.name={method}", "method.metadata=[]", *SMALL])


@pytest.mark.parametrize("method", KERNEL_METHODS)
def test_sigma_per_metadata_column_is_checked_at_config_time(method):
    """A sigma list of another length than method.metadata failed only at the first training step, after the data
    were prepared, and without naming the config keys; one bandwidth per column trains."""
    import re

    from medssl.api import build_method
    from medssl.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=re.escape("method.loss.sigma=[5.0, 0.5] has 2 bandwidths but "
                                                    "method.metadata=['age'] has 1 column")):
        load_config(None, [f"method.name={method}", "method.loss={sigma: [5.0, 0.5]}", *SMALL])
    cfg = load_config(None, [f"method.name={method}", "method.metadata=[age, sex]", "method.loss={sigma: [5.0, 0.5]}",
                             *SMALL])
    batch = {"image": torch.randn(4, 1, 8, 8, 8), "age": torch.tensor([20.0, 31, 45, 60]), "sex": torch.tensor([0, 1, 1, 0])}
    assert torch.isfinite(build_method(cfg).training_step(batch, torch.Generator().manual_seed(0)).loss)


@pytest.mark.parametrize("overrides", [["method.name=simclr"], ["method.name=supinfonce"],
                                       ["method.name=supinfonce", "method.label_column=label", "method.loss.name=ntxent"]])
def test_label_free_contrastive_method_with_one_view_is_refused(overrides):
    """Without labels the only positive of an anchor is its other view: with method.n_views=1 the loss was exactly 0
    with a zero gradient at every step, and the run trained nothing, silently."""
    import re

    from medssl.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=re.escape("method.n_views=1: the only positives are the other views")):
        load_config(None, [*overrides, "method.n_views=1", *SMALL])
    load_config(None, [*overrides, *SMALL])  # two views (the default) train
    for ok in (["method.name=supinfonce", "method.label_column=label"], ["method.name=yaware"]):
        load_config(None, [*ok, "method.n_views=1", *SMALL])  # other samples are positives: one view learns


@pytest.mark.parametrize("method, extra", [("genesis", []), ("mae", ["encoder.name=vit_tiny", "encoder.options={img_size: 8, "
                                           "patch_size: 4, hidden_size: 24, num_layers: 1, num_heads: 2}"])])
def test_generative_methods_refuse_contrastive_settings_they_would_ignore(method, extra):
    """MAE and Models Genesis have no contrastive loss: method.loss and a FairKL weight were accepted and silently
    ignored (a run asked to remove site information got none)."""
    import re

    from medssl.config import ConfigError, load_config

    base = [f"method.name={method}", *SMALL, *extra]
    load_config(None, base)
    for setting, key in (("method.fairkl_weight=1.0", "method.fairkl_weight"),
                         ("method.loss={temperature: 0.2}", "method.loss")):
        with pytest.raises(ConfigError, match=re.escape(f"{key}: {method} has no contrastive loss and would ignore it")):
            load_config(None, [*base, setting])


def test_fairkl_on_the_label_column_itself_is_refused():
    """With bias_column == label_column every same-label pair is bias-aligned and every other-label pair conflicting:
    both groups FairKL compares are empty, so the term was exactly 0 (logged as fairkl 0.0) and debiased nothing."""
    import re

    from medssl.config import ConfigError, load_config

    base = ["method.name=supinfonce", "method.label_column=site", "method.fairkl_weight=1.0", *SMALL]
    with pytest.raises(ConfigError, match=re.escape("method.bias_column='site' is also method.label_column")):
        load_config(None, [*base, "method.bias_column=site"])
    load_config(None, [*base, "method.bias_column=sex"])
    load_config(None, [*base[:2], "method.bias_column=site", *SMALL])  # no FairKL: nothing to refuse
