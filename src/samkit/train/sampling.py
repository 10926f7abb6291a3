"""Which images of a training set a run draws from: those with at least one mask."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samkit.data.types import Sample
from samkit.errors import InvalidDataset
from samkit.fileio import read_head

__all__ = ["images_with_masks", "training_indices"]


#: ``"annotations": [`` and, when the list is empty, its closing bracket.
_ANNOTATIONS_START = re.compile(r'"annotations"\s*:\s*\[\s*(\])?')


def _usable(json_path: Path) -> bool:
    """Whether an SA-1B JSON may hold a mask: its ``annotations`` list is not empty, or
    the file cannot be read (it then fails with its own message when it is drawn).

    The head of the file usually settles it (``annotations`` follows the small ``image``
    record); only otherwise is the whole file, which can be megabytes of RLE, parsed.
    """
    head = read_head(json_path)
    match = _ANNOTATIONS_START.search(head)
    if match is not None and match.group(1) is None and match.end() < len(head):
        return True  # a list that does not close at once
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    annotations = doc.get("annotations") if isinstance(doc, dict) else None
    return not isinstance(annotations, list) or len(annotations) > 0


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
        return [i for i, path in enumerate(data.json_paths) if _usable(path)]
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
