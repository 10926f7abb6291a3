"""Datasets (SA-1B format, COCO instances, synthetic) and augmentations for training."""

from samkit.data.types import Sample

__all__ = ["Sample"]
