"""medssl: self-supervised learning for 2D and 3D medical scans."""
__version__ = "0.1.0"
