"""Which images of a training set a run draws from: those with at least one mask."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samkit.data.types import Sample
from samkit.errors import InvalidDataset

__all__ = ["images_with_masks", "training_indices"]


def _annotation_count(json_path: Path) -> int | None:
    """Length of an SA-1B JSON's ``annotations`` list (``None`` if it cannot be read)."""
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    annotations = doc.get("annotations") if isinstance(doc, dict) else None
    return len(annotations) if isinstance(annotations, list) else None


def _has_mask(sample: Sample) -> bool:
    masks = np.asarray(sample.masks)
    return masks.ndim == 3 and masks.shape[0] > 0 and bool(masks.any())


def images_with_masks(data: Sequence[Sample]) -> list[int]:
    """Indices of the samples of ``data`` that have a mask to train on, in order.

    An :class:`~samkit.data.SA1BDataset` is judged by its JSON files' ``annotations``
    lists, without decoding any image (a JSON that cannot be read counts as usable: it
    fails with its own message when it is drawn); a
    :class:`~samkit.data.CocoInstancesDataset` holds only images with annotations, all
    usable. Any other sequence is read sample by sample: a sample counts when one of its
    masks has a pixel. A drawn image whose masks all turn out empty still gives no loss
    (:meth:`Trainer.image_loss <samkit.train.trainer.Trainer.image_loss>` is ``None``).
    """
    from samkit.data import CocoInstancesDataset, SA1BDataset

    if isinstance(data, CocoInstancesDataset):
        return list(range(len(data)))
    if isinstance(data, SA1BDataset):
        counts = [_annotation_count(p) for p in data.json_paths]
        return [i for i, count in enumerate(counts) if count is None or count > 0]
    return [i for i in range(len(data)) if _has_mask(data[i])]


def training_indices(data: Sequence[Sample]) -> list[int]:
    """:func:`images_with_masks` of a training set, with a ``UserWarning`` saying how
    many images are skipped (when some are).

    Raises:
        InvalidDataset: ``data`` is empty or no image of it has a mask.
    """
    if len(data) == 0:
        raise InvalidDataset("train_data is empty")
    indices = images_with_masks(data)
    if not indices:
        raise InvalidDataset(f"nothing to train on: none of the {len(data)} images has a mask")
    if len(indices) < len(data):
        skipped = len(data) - len(indices)
        warnings.warn(f"{skipped} of {len(data)} images have no mask and are skipped", stacklevel=3)
    return indices
