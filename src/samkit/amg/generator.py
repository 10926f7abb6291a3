"""The automatic mask generator :class:`MaskGenerator` (semantics, record fields and the
order of the work: see the :mod:`samkit.amg` docstring)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from samkit.amg.defaults import generator_defaults
from samkit.amg.types import _OUTPUT_MODES, AMGStats, AMGUpdate, MaskRecord, OutputMode, _MaskSet
from samkit.errors import InvalidArgument, InvalidArgumentType, InvalidImage
from samkit.inference.predictor import ImagePredictor
from samkit.inference.transforms import (
    ImageLike,
    coords_to_input,
    to_rgb_uint8,
)
from samkit.masks import (
    box_area,
    build_all_layer_point_grids,
    fill_small_regions_logits,
    generate_crop_boxes,
    is_box_near_crop_edge,
    masks_to_boxes,
    nms,
    remove_small_regions,
    rle_decode,
    rle_encode,
    rle_to_coco,
    stability_score,
    uncrop_masks,
)
from samkit.modeling import SamModel
from samkit.modeling.mask_decoder import PreparedImage
from samkit.modeling.sam import Sam
from samkit.types import is_int

__all__ = ["MaskGenerator"]


class MaskGenerator:
    """Generate masks for a whole image by prompting a grid of points.

    Args:
        model_or_predictor: a samkit model (SAM 1 family or SAM 2) or an
            :class:`~samkit.ImagePredictor` wrapping one.
        points_per_side: grid points along one side of the image (the grid has
            ``points_per_side ** 2`` points); ``None`` requires ``point_grids``.
        points_per_batch: points decoded together (memory/speed trade-off only).
        pred_iou_thresh: keep masks whose predicted IoU is above this; ``None`` uses
            the model's calibrated default if its preset has one (``samkit-demo``), else
            the family's official one (SAM 1: 0.88, SAM 2: 0.8).
        stability_score_thresh: keep masks whose stability score is at least this;
            ``None``: the model's calibrated default, else 0.95.
        stability_score_offset: logit offset of the stability score; ``None``: the
            model's calibrated default, else 1.0.
        box_nms_thresh: box-IoU threshold of the NMS among one crop's masks.
        crop_n_layers: extra layers of zoomed-in crops (layer ``i`` has ``(2**i)**2``
            crops).
        crop_nms_thresh: box-IoU threshold of the NMS across crops.
        crop_overlap_ratio: crop overlap as a fraction of the image's short side
            (scaled down by the number of crops per side).
        crop_n_points_downscale_factor: points per side shrink by this factor per layer.
        point_grids: explicit ``(n, 2)`` grids in ``[0, 1]`` (x, y), one per layer.
        min_mask_region_area: if > 0, remove holes and islands smaller than this many
            pixels from each mask (then NMS again, preferring unchanged masks).
        output_mode: ``"binary_mask"``, ``"uncompressed_rle"`` or ``"coco_rle"``.
        max_chunk_bytes: bound on the full-resolution float logits held at once (at
            least one mask's). Small chunks are also faster: 16 MiB (the default, two
            1024x768 masks) against 256 MiB made the full-resolution stage of a 16x16
            grid 3.5 -> 1.6 s on a 2-core CPU (cache-sized buffers that the allocator
            reuses instead of fresh pages on every chunk).
        multimask_output: three outputs per point (default) or one (SAM 2's option).
        use_m2m: SAM 2's mask-to-mask refinement: every candidate is decoded once more
            with its own low-res logits as the mask prompt (single output), and the
            refined mask and IoU replace it before filtering. Doubles decoder work.

    ``min_mask_region_area`` follows each family's official generator: SAM 1 removes
    small holes/islands from the full-resolution masks and re-runs NMS; SAM 2 instead
    fills holes and removes sprinkles of at most that many pixels in the 256x256 low-res
    logits before upsampling (the official SAM 2 needs its CUDA extension for this and
    silently skips it without one; samkit always applies it, on CPU too).
    """

    def __init__(
        self,
        model_or_predictor: SamModel | ImagePredictor,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float | None = None,
        stability_score_thresh: float | None = None,
        stability_score_offset: float | None = None,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Sequence[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: OutputMode = "binary_mask",
        max_chunk_bytes: int = 16 * 2**20,
        multimask_output: bool = True,
        use_m2m: bool = False,
    ) -> None:
        from samkit.modeling.sam2 import Sam2

        if isinstance(model_or_predictor, ImagePredictor):
            self.predictor = model_or_predictor
        elif isinstance(model_or_predictor, (Sam, Sam2)):
            self.predictor = ImagePredictor(model_or_predictor, check_bounds=False)
        else:
            raise InvalidArgumentType("MaskGenerator needs a samkit model or an ImagePredictor")
        if (points_per_side is None) == (point_grids is None):
            raise InvalidArgument("give exactly one of points_per_side and point_grids")
        if output_mode not in _OUTPUT_MODES:
            raise InvalidArgument(f"output_mode must be one of {', '.join(_OUTPUT_MODES)}")
        for name, value in (
            ("points_per_batch", points_per_batch),
            ("crop_n_layers", crop_n_layers),
            ("crop_n_points_downscale_factor", crop_n_points_downscale_factor),
            ("min_mask_region_area", min_mask_region_area),
            ("points_per_side", 1 if points_per_side is None else points_per_side),
        ):
            if not is_int(value):
                raise InvalidArgument(f"{name} must be an int, got {value!r}")
        if points_per_batch < 1:
            raise InvalidArgument("points_per_batch must be >= 1")
        if crop_n_layers < 0:
            raise InvalidArgument("crop_n_layers must be >= 0")
        if min_mask_region_area < 0:
            raise InvalidArgument("min_mask_region_area must be >= 0")
        for name, value in (
            ("pred_iou_thresh", pred_iou_thresh),
            ("stability_score_thresh", stability_score_thresh),
            ("stability_score_offset", stability_score_offset),
            ("box_nms_thresh", box_nms_thresh),
            ("crop_nms_thresh", crop_nms_thresh),
            ("crop_overlap_ratio", crop_overlap_ratio),
        ):
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
                raise InvalidArgument(f"{name} must be a finite number, got {value!r}")
        if points_per_side is not None:
            if points_per_side < 1:
                raise InvalidArgument("points_per_side must be >= 1")
            self.point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            self.point_grids = [np.asarray(g, dtype=np.float64) for g in point_grids or ()]
            if len(self.point_grids) != crop_n_layers + 1:
                raise InvalidArgument(
                    "point_grids needs one grid per crop layer (crop_n_layers + 1)"
                )
            if any(g.ndim != 2 or g.shape[1] != 2 for g in self.point_grids):
                shapes = [g.shape for g in self.point_grids]
                raise InvalidArgument(f"point_grids must be (n, 2) arrays of (x, y), got {shapes}")
            if any(not np.all((g >= 0.0) & (g <= 1.0)) for g in self.point_grids):
                raise InvalidArgument("point_grids hold normalised (x, y) in [0, 1] (no NaN)")
        defaults = generator_defaults(self.predictor.model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = (
            defaults.pred_iou_thresh if pred_iou_thresh is None else pred_iou_thresh
        )
        self.stability_score_thresh = (
            defaults.stability_score_thresh
            if stability_score_thresh is None
            else stability_score_thresh
        )
        self.stability_score_offset = (
            defaults.stability_score_offset
            if stability_score_offset is None
            else stability_score_offset
        )
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode: OutputMode = output_mode
        self.max_chunk_bytes = max_chunk_bytes
        self.multimask_output = multimask_output
        self.use_m2m = use_m2m
        self._family = getattr(self.predictor.model, "family", "sam")

    @property
    def model(self) -> SamModel:
        return self.predictor.model

    # ------------------------------------------------------------------ public
    def generate(self, image: ImageLike) -> list[MaskRecord]:
        """All masks of ``image`` (``(H, W, 3)`` uint8 RGB array, PIL image or path)."""
        records: list[MaskRecord] | None = None
        for update in self.stream(image):
            records = update.records
        assert records is not None
        return records

    def stream(self, image: ImageLike) -> Iterator[AMGUpdate]:
        """Generate masks batch by batch.

        Yields one :class:`AMGUpdate` per decoded point batch (its ``candidates`` are the
        masks of that batch that passed the IoU, stability and crop-edge filters, before
        any NMS); the last update's ``records`` is the final result.
        """
        rgb = to_rgb_uint8(image)
        if rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise InvalidImage(f"image has no pixels: shape {rgb.shape}")
        orig_h, orig_w = int(rgb.shape[0]), int(rgb.shape[1])
        stats = AMGStats()
        crop_boxes, layer_idxs = generate_crop_boxes(
            (orig_h, orig_w), self.crop_n_layers, self.crop_overlap_ratio
        )
        # an image smaller than a layer's crop grid gives crops without pixels: leave them
        nonempty = [i for i, b in enumerate(crop_boxes) if b[2] > b[0] and b[3] > b[1]]
        crop_boxes = [crop_boxes[i] for i in nonempty]
        layer_idxs = [layer_idxs[i] for i in nonempty]
        per_crop: list[_MaskSet] = []
        last: AMGUpdate | None = None
        for ci, (crop_box, layer) in enumerate(zip(crop_boxes, layer_idxs, strict=True)):
            batches: list[_MaskSet] = []
            for update, batch in self._process_crop(
                rgb, crop_box, layer, (orig_h, orig_w), ci, len(crop_boxes), stats
            ):
                batches.append(batch)
                last = update
                if update.batch_index + 1 < update.num_batches or ci + 1 < len(crop_boxes):
                    yield update
            t0 = time.perf_counter()
            data = _MaskSet.concat(batches)
            if len(data):
                keep = nms(data.boxes.float(), data.iou_preds, self.box_nms_thresh)
                data = data.select(keep)
            per_crop.append(data)
            stats.postprocess_s += time.perf_counter() - t0

        t0 = time.perf_counter()
        data = _MaskSet.concat(per_crop)
        if len(crop_boxes) > 1 and len(data):
            scores = 1.0 / box_area(data.crop_boxes.float())
            keep = nms(data.boxes.float(), scores, self.crop_nms_thresh)
            data = data.select(keep)
        if self.min_mask_region_area > 0 and len(data) and self._family == "sam":
            data = self._remove_small_regions(data, max(self.box_nms_thresh, self.crop_nms_thresh))
        records = data.records(self._encode_outputs(data.rles))
        stats.postprocess_s += time.perf_counter() - t0
        stats.num_masks = len(records)
        assert last is not None
        yield replace(last, records=records, stats=stats)

    # ----------------------------------------------------------------- helpers
    def _encode_outputs(self, rles: list[dict[str, Any]]) -> list[Any]:
        if self.output_mode == "coco_rle":
            return [rle_to_coco(r) for r in rles]
        if self.output_mode == "binary_mask":
            return [rle_decode(r) for r in rles]
        return rles

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        layer: int,
        orig_size: tuple[int, int],
        crop_index: int,
        num_crops: int,
        stats: AMGStats,
    ) -> Iterator[tuple[AMGUpdate, _MaskSet]]:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        crop_h, crop_w = int(crop.shape[0]), int(crop.shape[1])
        t0 = time.perf_counter()
        embedding = self.predictor.encode(crop)
        stats.encoder_s += time.perf_counter() - t0

        grid = self.point_grids[layer]
        points = grid * np.array([[crop_w, crop_h]], dtype=np.float64)  # (n, 2) crop frame
        n = len(points)
        num_batches = max(1, -(-n // self.points_per_batch))
        stats.num_points += n
        for bi in range(num_batches):
            batch_points = points[bi * self.points_per_batch : (bi + 1) * self.points_per_batch]
            data = self._process_batch(batch_points, embedding, crop_box, orig_size, stats)
            stats.num_candidates += len(data)
            data.crop_boxes = torch.tensor([crop_box] * len(data), dtype=torch.int64).reshape(-1, 4)
            candidates = data.records(data.rles)
            update = AMGUpdate(crop_index, num_crops, bi, num_batches, candidates, None, stats)
            yield update, data

    @torch.inference_mode()
    def _process_batch(
        self,
        points: np.ndarray,
        embedding: Any,
        crop_box: list[int],
        orig_size: tuple[int, int],
        stats: AMGStats,
    ) -> _MaskSet:
        """Decode ``(b, 2)`` crop-frame points; returns survivors in the image frame."""
        model = self.model
        device = self.predictor.device
        crop_h, crop_w = embedding.original_size
        input_size = embedding.input_size
        t0 = time.perf_counter()
        coords = coords_to_input(points, (crop_h, crop_w), input_size)
        in_points = torch.as_tensor(coords, device=device).float()[:, None, :]
        in_labels = torch.ones(len(points), 1, dtype=torch.int64, device=device)
        # 1. predicted IoU: it does not depend on the masks, so filter before the
        #    decoder's upscaling runs (only prompts with a surviving output are upscaled).
        thresh = self.pred_iou_thresh

        def select(iou_pred: torch.Tensor) -> torch.Tensor:
            if thresh > 0.0:
                return iou_pred > thresh
            return torch.ones_like(iou_pred, dtype=torch.bool)

        high_res = embedding.high_res_features
        prepared = self.predictor._prepared_for(embedding)  # once per crop, then reused
        if not self.use_m2m:
            iou, kept, low_res = model.decode_selected(
                embedding.features,
                select,
                points=(in_points, in_labels),
                multimask_output=self.multimask_output,
                high_res_features=high_res,
                prepared=prepared,
            )
        else:
            iou, kept, low_res = self._decode_m2m(
                embedding.features, high_res, in_points, in_labels, select, prepared
            )
        k = iou.shape[1]
        keep = torch.nonzero(kept.flatten()).flatten().cpu()  # indices into (b*k), point-major
        iou = iou.flatten().float().cpu()
        pts = torch.as_tensor(np.repeat(points, k, axis=0))  # (b*k, 2) crop frame, float64
        if self._family == "sam2":  # the official SAM 2 generator's points are float32
            pts = pts.float()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # honest per-stage timings
        t1 = time.perf_counter()
        stats.decoder_s += t1 - t0

        # 2. upsample survivors in bounded chunks; stability, threshold, boxes, RLE.
        orig_h, orig_w = orig_size
        per_mask = 4 * crop_h * crop_w + 4 * input_size[0] * input_size[1]
        chunk = max(1, int(self.max_chunk_bytes // max(per_mask, 1)))
        thr = model.mask_threshold
        parts: list[_MaskSet] = []
        for start in range(0, len(keep), chunk):
            idx = keep[start : start + chunk]  # (c,) indices into the flattened outputs
            lr = low_res[start : start + chunk][:, None].float()
            if self._family == "sam2" and self.min_mask_region_area > 0:
                lr = fill_small_regions_logits(lr, self.min_mask_region_area, thr)
            logits = model.postprocess_masks(lr, input_size, (crop_h, crop_w))[:, 0]
            stab = stability_score(logits, thr, self.stability_score_offset).cpu()
            ok = torch.ones(len(idx), dtype=torch.bool)
            if self.stability_score_thresh > 0.0:
                ok = stab >= self.stability_score_thresh
            masks = logits[ok.to(logits.device)] > thr
            del logits
            boxes = masks_to_boxes(masks).cpu()
            sub, sub_stab = idx[ok], stab[ok]
            far = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
            if not bool(far.all()):
                masks, boxes, sub, sub_stab = (
                    masks[far.to(masks.device)],
                    boxes[far],
                    sub[far],
                    sub_stab[far],
                )
            if len(sub) == 0:
                continue
            masks = uncrop_masks(masks, crop_box, orig_h, orig_w)
            parts.append(
                _MaskSet(
                    rles=rle_encode(masks),
                    boxes=boxes + torch.tensor([[crop_box[0], crop_box[1]] * 2]),
                    iou_preds=iou[sub],
                    points=pts[sub] + torch.tensor([[float(crop_box[0]), float(crop_box[1])]]),
                    stability=sub_stab,
                )
            )
        stats.postprocess_s += time.perf_counter() - t1
        return _MaskSet.concat(parts)

    def _decode_m2m(
        self,
        features: torch.Tensor,
        high_res: tuple[torch.Tensor, ...],
        points: torch.Tensor,
        labels: torch.Tensor,
        select: Callable[[torch.Tensor], torch.Tensor],
        prepared: PreparedImage | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode, then refine every output with itself as the mask prompt.

        Returns IoU ``(b, k)``, keep ``(b, k)`` and kept logits like ``decode_selected``.
        """
        model = self.model
        low_res, _ = model.decode(
            features,
            points=(points, labels),
            multimask_output=self.multimask_output,
            high_res_features=high_res,
            prepared=prepared,
        )
        b, k = low_res.shape[:2]
        limit = model.low_res_logit_limit
        prev = low_res.flatten(0, 1)[:, None]  # (b*k, 1, h, w), as the predictor returns them
        if limit is not None:
            prev = prev.clamp(-limit, limit)
        pts = points.repeat_interleave(k, dim=0)
        lbl = labels.repeat_interleave(k, dim=0)
        refined, iou = model.decode(
            features,
            points=(pts, lbl),
            mask_input=prev,
            multimask_output=False,
            high_res_features=high_res,
        )
        iou = iou.reshape(b, k)
        keep = select(iou).to(torch.bool)
        return iou, keep, refined.reshape(b, k, *refined.shape[-2:])[keep]

    def _remove_small_regions(self, data: _MaskSet, nms_thresh: float) -> _MaskSet:
        """Fill small holes, drop small islands, then NMS preferring unchanged masks.

        Masks are decoded one at a time (memory stays at one full-resolution mask);
        only changed masks are re-encoded.
        """
        rles = list(data.rles)
        boxes = data.boxes.clone()
        scores = torch.ones(len(rles))
        for i, rle in enumerate(data.rles):
            mask = rle_decode(rle)
            mask, changed_holes = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, changed_islands = remove_small_regions(mask, self.min_mask_region_area, "islands")
            if changed_holes or changed_islands:
                tensor = torch.from_numpy(np.ascontiguousarray(mask))[None]
                rles[i] = rle_encode(tensor)[0]
                boxes[i] = masks_to_boxes(tensor)[0]
                scores[i] = 0.0
        keep = nms(boxes.float(), scores, nms_thresh)
        return replace(data, rles=rles, boxes=boxes).select(keep)
