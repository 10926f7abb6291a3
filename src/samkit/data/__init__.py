"""Datasets (SA-1B format, COCO instances, synthetic) and augmentations for training."""

from samkit.data.augment import Augment, color_jitter, hflip, resize_longest_side, vflip
from samkit.data.coco import CocoInstancesDataset
from samkit.data.sa1b import SA1BDataset, read_sa1b, write_sa1b
from samkit.data.synthetic import (
    SyntheticConfig,
    SyntheticDataset,
    generate_sample,
    write_synthetic_dataset,
)
from samkit.data.types import Sample

__all__ = [
    "Augment",
    "CocoInstancesDataset",
    "SA1BDataset",
    "Sample",
    "SyntheticConfig",
    "SyntheticDataset",
    "color_jitter",
    "generate_sample",
    "hflip",
    "read_sa1b",
    "resize_longest_side",
    "vflip",
    "write_sa1b",
    "write_synthetic_dataset",
]
