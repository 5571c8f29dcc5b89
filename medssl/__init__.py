"""medssl: self-supervised learning for 2D and 3D medical scans."""
__version__ = "0.1.0"


def load_encoder(path, **overrides):
    """Rebuild an encoder exported with ``medssl export`` (safetensors + JSON spec), in eval mode.

    ``overrides`` change encoder arguments (e.g. ``checkpointing=True``). See
    :func:`medssl.export.load_encoder`; importing is deferred so ``import medssl`` stays cheap.
    """
    from medssl.export import load_encoder as _load

    return _load(path, **overrides)


__all__ = ["__version__", "load_encoder"]
