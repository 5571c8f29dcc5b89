"""Small encoders and image datasets for the evaluator tests."""


def make_tiny_encoder(seed: int = 0):
    """A 3D encoder honouring the contract (spatial_dims, in_channels, out_dim; (B,1,*S) → (B,8))."""
    import torch
    from torch import nn

    class _Tiny(nn.Module):
        spatial_dims, in_channels, out_dim = 3, 1, 8

        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(),
                                     nn.Conv3d(4, 8, 3, padding=1, stride=2), nn.BatchNorm3d(8), nn.ReLU())

        def forward(self, x):
            return self.net(x).mean(dim=(2, 3, 4))

    torch.manual_seed(seed)
    return _Tiny()


def make_image_dataset(n: int = 48, seed: int = 0):
    """``(dataset, age)``: (1, 8, 8, 8) noise images whose brightness encodes age (years); items are dicts."""
    import torch

    g = torch.Generator().manual_seed(seed)
    age = torch.rand(n, generator=g) * 60 + 20
    images = torch.randn(n, 1, 8, 8, 8, generator=g) * 0.5 + ((age - 50) / 20).view(n, 1, 1, 1, 1)
    images[:, :, :, :, :4] *= 1.5  # left-right asymmetry, so that a flip changes the embedding
    return [{"image": images[i], "age": age[i], "index": torch.tensor(i)} for i in range(n)], age.numpy().astype(float)


def state_copy(module) -> dict:
    """A detached copy of ``module.state_dict()`` (to compare weights before / after training)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def twin_scan_cohort(n_subjects: int, n_features: int, seed: int = 0):
    """``(x, age, site, subject)``: two noisy scans per subject (2·n rows), feature 0 carries age (years),
    sites 0, 1, 2 in turn; with more features than subjects the probes' α depends on the CV folds."""
    import numpy as np

    rng = np.random.default_rng(seed)
    age_s = rng.uniform(20, 80, n_subjects)
    base = rng.normal(size=(n_subjects, n_features))
    base[:, 0] += (age_s - 50) / 20
    idx = np.repeat(np.arange(n_subjects), 2)
    return base[idx] + 0.05 * rng.normal(size=(2 * n_subjects, n_features)), age_s[idx], idx % 3, idx.astype(str)
