"""Pure mask and box utilities for automatic mask generation (AMG).

Everything here is model-free: run-length encoding, mask -> box, stability score, box IoU
and greedy NMS, small-region cleanup, point grids and crop boxes for the multi-crop
generator, and the maps from crop coordinates back to image coordinates. The functions
that have a counterpart in the official ``segment_anything/utils/amg.py`` produce the same
values (same order, same rounding), because samkit's mask generator must reproduce the
official generator's output; the tests compare against the official code directly.

Frames and conventions
----------------------
* Masks are ``(..., H, W)`` bool, row ``y`` then column ``x``, in the frame named by the
  caller (a crop or the whole image).
* **Mask boxes** (:func:`masks_to_boxes`) are int64 ``XYXY`` *pixel indices*, inclusive on
  both ends: a single pixel at ``(x, y)`` has the box ``[x, y, x, y]``. An empty mask has
  the box ``[0, 0, 0, 0]``.
* **Crop boxes** (:func:`generate_crop_boxes`) are ``[x0, y0, x1, y1]`` Python ints with an
  exclusive end, i.e. the crop is ``image[y0:y1, x0:x1]``.
* Boxes given to :func:`box_area`, :func:`box_iou`, :func:`nms` are continuous ``XYXY``;
  the area is ``(x1 - x0) * (y1 - y0)`` (no ``+1``), as in torchvision.
* Point grids (:func:`build_point_grid`) are ``(x, y)`` normalised to ``[0, 1]``; multiply
  by ``(W, H)`` of the crop to get pixels.
* ``uncrop_*`` add the crop's ``(x0, y0)`` offset to go from crop to image coordinates.

Run-length encoding
-------------------
Uncompressed RLE is ``{"size": [H, W], "counts": [int, ...]}``: the mask is read in
column-major (Fortran) order and ``counts`` alternates runs of 0 and 1, starting with the
number of leading zeros (``0`` when the first pixel is set). Compressed RLE is the COCO
string form ``{"size": [H, W], "counts": str}``. For compressed RLE we rely on
``pycocotools`` (the well-kept reference implementation of the COCO format, already a
samkit dependency) so that strings are byte-identical to what every COCO tool writes;
the uncompressed encoder is our own vectorised torch code.
"""

from samkit.masks.boxes import (
    batched_nms,
    box_area,
    box_iou,
    box_xyxy_to_xywh,
    masks_to_boxes,
    nms,
)
from samkit.masks.crops import (
    build_all_layer_point_grids,
    build_point_grid,
    generate_crop_boxes,
    is_box_near_crop_edge,
    layer_points_per_side,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from samkit.masks.regions import (
    component_sizes,
    fill_small_regions_logits,
    remove_small_regions,
    small_components,
    stability_score,
)
from samkit.masks.rle import (
    check_coco_rle,
    coco_counts,
    decode_rle_objects,
    masks_to_coco_rle,
    rle_area,
    rle_decode,
    rle_encode,
    rle_to_coco,
)

__all__ = [
    "batched_nms",
    "box_area",
    "box_iou",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "layer_points_per_side",
    "build_point_grid",
    "component_sizes",
    "fill_small_regions_logits",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "masks_to_boxes",
    "decode_rle_objects",
    "masks_to_coco_rle",
    "nms",
    "remove_small_regions",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "rle_to_coco",
    "check_coco_rle",
    "coco_counts",
    "small_components",
    "stability_score",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]
