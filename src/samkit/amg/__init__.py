"""Automatic mask generation ("segment everything") with the official semantics.

:class:`MaskGenerator` prompts a regular grid of foreground points over the image (and
optionally over overlapping zoomed-in crops), keeps the confident, stable candidates,
removes duplicates with box NMS (within each crop, then across crops preferring smaller
crops) and returns one record per mask with the fields of the official
``SamAutomaticMaskGenerator``::

    segmentation     (H, W) bool array, or an uncompressed / COCO RLE dict (output_mode)
    area             int, mask pixels
    bbox             [x, y, w, h], pixels, inclusive-max box converted to XYWH
    predicted_iou    float, the model's IoU prediction
    point_coords     [[x, y]], the prompt point in the image frame (pixels)
    stability_score  float
    crop_box         [x, y, w, h] of the crop that produced the mask

The result is the official generator's, computed in a different order so that most of
the work is skipped (see :meth:`MaskGenerator.stream`):

* the predicted-IoU filter runs on the low-resolution logits, before any upsampling
  (it does not depend on the masks);
* only the survivors are upsampled, in chunks bounded to ``max_chunk_bytes`` of full
  resolution logits (the official code materialises ``3 x points_per_batch`` float
  masks at full resolution, about 9 GB for a 4000x3000 image);
* the stability score, thresholding, boxes and the crop-edge filter run on those
  chunks; masks are stored as run-length encodings straight away.

All coordinates are pixels of the image passed to :meth:`generate` unless stated.

The package is laid out by concern: :mod:`samkit.amg.generator` holds
:class:`MaskGenerator`, :mod:`samkit.amg.types` the record, progress and timing types
(:class:`MaskRecord`, :class:`AMGUpdate`, :class:`AMGStats`, ``OutputMode``) and
:mod:`samkit.amg.defaults` the default thresholds (:func:`generator_defaults`); every
name is re-exported here, so ``from samkit.amg import ...`` is the public import path.
"""

from __future__ import annotations

from samkit.amg.defaults import generator_defaults
from samkit.amg.generator import MaskGenerator
from samkit.amg.types import AMGStats, AMGUpdate, MaskRecord, OutputMode

__all__ = [
    "AMGStats",
    "AMGUpdate",
    "MaskGenerator",
    "MaskRecord",
    "OutputMode",
    "generator_defaults",
]
