"""Per-sample deterministic preprocessing and batch augmentations (views, Models Genesis
corruptions, MAE masks) that run on whole batches on CPU or GPU."""

from medssl.transforms.genesis import GenesisCorruption
from medssl.transforms.masking import PatchMask, RandomPatchMasking, patchify, random_patch_mask, unpatchify
from medssl.transforms.preprocess import Preprocessor, to_canonical
from medssl.transforms.presets import PRESETS, AugmentParams, get_preset, list_presets
from medssl.transforms.views import ViewPipeline, build_view_pipeline, make_views, save_view_grid

__all__ = ["AugmentParams", "GenesisCorruption", "PRESETS", "PatchMask", "Preprocessor", "RandomPatchMasking",
           "ViewPipeline", "build_view_pipeline", "get_preset", "list_presets", "make_views", "patchify",
           "random_patch_mask", "save_view_grid", "to_canonical", "unpatchify"]
