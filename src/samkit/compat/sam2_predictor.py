"""The official ``SAM2ImagePredictor`` interface (package ``sam2``), backed by samkit.

Use it through :mod:`samkit.compat` (with ``build_sam2`` from
:mod:`samkit.compat.sam2_build`)::

    from samkit.compat import build_sam2, SAM2ImagePredictor

    model = build_sam2("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt")
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(image)                      # HxWx3 uint8 RGB, or a PIL image
    masks, scores, low_res = predictor.predict(point_coords=..., point_labels=...)

Names, arguments, defaults, return shapes and dtypes are the official ones: ``predict``
returns numpy ``(masks, iou_predictions, low_res_masks)`` with float32 0/1 masks (float
logits with ``return_logits=True``), ``(C, H, W)`` for one prompt set and ``(N, C, H, W)``
for N (several boxes, or ``(N, P, 2)`` points). Differences from the official package:

- ``max_hole_area`` / ``max_sprinkle_area`` always apply; the official code needs its
  CUDA extension for them and skips the clean-up with a warning without it.
- Images go through :func:`samkit.inference.transforms.to_rgb_uint8`, so float images in
  [0, 1] are rounded to uint8 first (the official code uses their values unrounded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from samkit.compat.sam2_build import build_sam2_hf
from samkit.errors import (
    InvalidArgument,
    InvalidArgumentType,
    InvalidImage,
    InvalidPrompt,
    NoImageSet,
)
from samkit.inference.transforms import to_rgb_uint8
from samkit.masks import fill_small_regions_logits
from samkit.modeling.mask_decoder import PreparedImage
from samkit.modeling.sam2 import Sam2

__all__ = ["SAM2ImagePredictor"]


class _Sam2Transforms:
    """Prompt-coordinate and mask transforms under the official ``SAM2Transforms`` method
    names (``predictor._transforms``); images are prepared by the model itself."""

    def __init__(
        self,
        resolution: int,
        mask_threshold: float,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
    ) -> None:
        self.resolution = resolution
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area

    def transform_coords(
        self,
        coords: torch.Tensor,
        normalize: bool = False,
        orig_hw: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """``(..., 2)`` (x, y) -> the model's input frame.

        ``normalize=True``: ``coords`` are pixels of an image of size ``orig_hw``;
        otherwise they are already fractions of the image width/height in [0, 1].
        """
        if normalize:
            if orig_hw is None:
                raise InvalidArgument("orig_hw is needed to normalise pixel coordinates")
            h, w = orig_hw
            coords = torch.stack([coords[..., 0] / w, coords[..., 1] / h], dim=-1)
        return coords * self.resolution

    def transform_boxes(
        self,
        boxes: torch.Tensor,
        normalize: bool = False,
        orig_hw: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """``(B, 4)`` XYXY boxes -> ``(B, 2, 2)`` corners in the input frame."""
        return self.transform_coords(boxes.reshape(-1, 2, 2), normalize, orig_hw)

    def postprocess_masks(self, masks: torch.Tensor, orig_hw: Sequence[int]) -> torch.Tensor:
        """Low-res logits ``(B, C, h, w)`` -> ``(B, C, H, W)`` logits at ``orig_hw``.

        Small holes / sprinkles are cleaned up at low resolution first when their areas
        are positive (both found on the same input mask).
        """
        masks = masks.float()
        if self.max_hole_area > 0 or self.max_sprinkle_area > 0:
            masks = fill_small_regions_logits(
                masks,
                self.max_hole_area,
                self.mask_threshold,
                max_sprinkle_area=self.max_sprinkle_area,
            )
        size = (int(orig_hw[0]), int(orig_hw[1]))
        return F.interpolate(masks, size, mode="bilinear", align_corners=False)


def _rgb(image: Any) -> np.ndarray:
    if not isinstance(image, (np.ndarray, Image.Image)):
        raise InvalidImage(
            f"unsupported image type {type(image).__name__}: pass an HxWx3 RGB numpy "
            "array or a PIL image"
        )
    return to_rgb_uint8(image)


class SAM2ImagePredictor:
    """The official ``SAM2ImagePredictor`` interface for a samkit SAM 2 model.

    State attributes keep their official names and meaning: ``_is_image_set``,
    ``_is_batch``, ``_orig_hw`` (list of ``(H, W)``) and ``_features``
    (``{"image_embed": (B, 256, h, w), "high_res_feats": [(B, 32, 4h, 4w),
    (B, 64, 2h, 2w)]}``), so code that reads or sets them keeps working.
    """

    def __init__(
        self,
        sam_model: Sam2,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(sam_model, Sam2):
            raise InvalidArgumentType(
                "SAM2ImagePredictor needs a samkit SAM 2 model (samkit.compat.build_sam2 or "
                f"samkit.load_model('sam2.1-hiera-...')), got {type(sam_model).__name__}"
            )
        self.model = sam_model
        self.mask_threshold = mask_threshold
        self._transforms = _Sam2Transforms(
            sam_model.image_size, mask_threshold, max_hole_area, max_sprinkle_area
        )
        s = sam_model.image_size
        # informational (the official predictor needs them to reshape its features)
        self._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        self._is_image_set = False
        self._is_batch = False
        self._features: dict[str, Any] | None = None
        self._embed_views: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        self._prepared: PreparedImage | None = None
        self._orig_hw: list[tuple[int, int]] | None = None

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> SAM2ImagePredictor:
        """A predictor for a published model id (see :func:`build_sam2_hf`); ``kwargs``
        go to both the builder and the constructor, as officially."""
        return cls(build_sam2_hf(model_id, **kwargs), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ images
    def _encode(self, images: list[np.ndarray]) -> None:
        x = torch.cat([self.model.prepare_image(rgb)[0] for rgb in images])
        image_embed, high_res = self.model.embed_image(x)
        self._features = {"image_embed": image_embed, "high_res_feats": list(high_res)}
        self._orig_hw = [(int(rgb.shape[0]), int(rgb.shape[1])) for rgb in images]
        self._is_image_set = True

    @torch.no_grad()
    def set_image(self, image: np.ndarray | Image.Image) -> None:
        """Encode one ``HxWx3`` uint8 RGB image (numpy or PIL) for :meth:`predict`."""
        self.reset_predictor()
        self._encode([_rgb(image)])

    @torch.no_grad()
    def set_image_batch(self, image_list: list[np.ndarray]) -> None:
        """Encode a list of ``HxWx3`` uint8 RGB numpy images for :meth:`predict_batch`."""
        self.reset_predictor()
        if not isinstance(image_list, list):
            raise InvalidImage("set_image_batch expects a list of numpy images")
        if not all(isinstance(im, np.ndarray) for im in image_list):
            raise InvalidImage("set_image_batch expects HxWx3 RGB numpy arrays")
        if not image_list:
            raise InvalidImage("set_image_batch got an empty list")
        self._encode([_rgb(im) for im in image_list])
        self._is_batch = True

    def get_image_embedding(self) -> torch.Tensor:
        """The current ``(B, 256, h, w)`` image embedding (B = 1 after ``set_image``)."""
        if not self._is_image_set or self._features is None:
            raise NoImageSet("An image must be set with .set_image(...) to get an embedding.")
        return self._features["image_embed"]

    def reset_predictor(self) -> None:
        """Forget the current image(s)."""
        self._is_image_set = False
        self._features = None
        self._orig_hw = None
        self._is_batch = False
        self._embed_views = None
        self._prepared = None

    # ----------------------------------------------------------------- prompts
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for the prompts on the current image.

        Args:
            point_coords: ``(P, 2)`` (x, y) pixels, or ``(N, P, 2)`` for N prompt sets;
                ``point_labels``: ``(P,)`` / ``(N, P)``, 1 foreground, 0 background,
                -1 padding.
            box: ``(4,)`` XYXY pixels, or ``(N, 4)`` for N objects at once.
            mask_input: ``(1, 256, 256)`` (or ``(N, 1, 256, 256)``) low-res logits
                from a previous call.
            multimask_output: three candidates (``True``) or one.
            return_logits: float logits instead of 0/1 masks.
            normalize_coords: ``True``: coordinates are pixels of the image; ``False``:
                they are already fractions of its width and height, in [0, 1].

        Returns:
            ``masks`` float32 ``(C, H, W)``, ``iou_predictions`` ``(C,)`` and
            ``low_res_masks`` ``(C, 256, 256)`` (logits clamped to +-32); with N prompt
            sets (N > 1) each gets a leading N axis.
        """
        if not self._is_image_set:
            raise NoImageSet("An image must be set with .set_image(...) before mask prediction.")
        prompts = self._prep_prompts(point_coords, point_labels, box, mask_input, normalize_coords)
        mask_in, coords, labels, boxes = prompts
        out = self._predict(coords, labels, boxes, mask_in, multimask_output, return_logits)
        return _to_numpy(*out)

    def predict_batch(
        self,
        point_coords_batch: Sequence[np.ndarray] | None = None,
        point_labels_batch: Sequence[np.ndarray] | None = None,
        box_batch: Sequence[np.ndarray] | None = None,
        mask_input_batch: Sequence[np.ndarray] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """:meth:`predict` for every image of :meth:`set_image_batch`; each ``*_batch``
        holds one entry per image. Returns three lists with one entry per image."""
        if not self._is_batch:
            raise NoImageSet("predict_batch needs images set with .set_image_batch(...)")
        if not self._is_image_set or self._features is None:
            raise NoImageSet(
                "An image must be set with .set_image_batch(...) before mask prediction."
            )

        def pick(batch: Sequence[Any] | None, i: int) -> Any:
            return None if batch is None else batch[i]

        all_masks, all_ious, all_low_res = [], [], []
        for i in range(len(self._features["image_embed"])):
            mask_in, coords, labels, boxes = self._prep_prompts(
                pick(point_coords_batch, i),
                pick(point_labels_batch, i),
                pick(box_batch, i),
                pick(mask_input_batch, i),
                normalize_coords,
                img_idx=i,
            )
            out = self._predict(
                coords, labels, boxes, mask_in, multimask_output, return_logits, img_idx=i
            )
            masks, ious, low_res = _to_numpy(*out)
            all_masks.append(masks)
            all_ious.append(ious)
            all_low_res.append(low_res)
        return all_masks, all_ious, all_low_res

    def _prep_prompts(
        self,
        point_coords: Any,
        point_labels: Any,
        box: Any,
        mask_logits: Any,
        normalize_coords: bool,
        img_idx: int = -1,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """User prompts -> ``(mask_input, coords, labels, boxes)`` tensors in the input
        frame (coords ``(N, P, 2)``, boxes ``(N, 2, 2)``, masks ``(N, 1, h, w)``)."""
        if self._orig_hw is None:
            raise NoImageSet("An image must be set with .set_image(...) before mask prediction.")
        orig_hw = self._orig_hw[img_idx]
        coords = labels = boxes = mask_input = None
        if point_coords is not None:
            if point_labels is None:
                raise InvalidPrompt("point_labels must be supplied if point_coords is supplied.")
            pts = torch.as_tensor(point_coords, dtype=torch.float, device=self.device)
            coords = self._transforms.transform_coords(pts, normalize_coords, orig_hw)
            labels = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)
            if coords.dim() == 2:
                coords, labels = coords[None], labels[None]
        if box is not None:
            b = torch.as_tensor(box, dtype=torch.float, device=self.device)
            boxes = self._transforms.transform_boxes(b, normalize_coords, orig_hw)
        if mask_logits is not None:
            mask_input = torch.as_tensor(mask_logits, dtype=torch.float, device=self.device)
            if mask_input.dim() == 3:
                mask_input = mask_input[None]
        return mask_input, coords, labels, boxes

    @torch.no_grad()
    def _predict(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        img_idx: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode prompts already in the input frame (see :meth:`_prep_prompts`) against
        image ``img_idx``; torch ``(masks, iou, low_res)`` with a leading batch axis."""
        if not self._is_image_set or self._features is None or self._orig_hw is None:
            raise NoImageSet("An image must be set with .set_image(...) before mask prediction.")
        points = None if point_coords is None else (point_coords, point_labels)
        feats = self._features
        embed = feats["image_embed"]
        views = self._embed_views  # one (1, C, h, w) view per image, made once per embed
        if views is None or views[0] is not embed:
            self._embed_views = views = (embed, [embed[i : i + 1] for i in range(len(embed))])
        image = views[1][img_idx]
        prepared = None
        if mask_input is None:  # the decoder's prompt-independent work, kept between calls
            prepared = self.model.prepare_decoding(image, reuse=self._prepared)
            self._prepared = prepared
        low_res, iou = self.model.decode(
            image,
            points=points,
            boxes=None if boxes is None else boxes.reshape(-1, 4),
            mask_input=mask_input,
            multimask_output=multimask_output,
            high_res_features=tuple(f[img_idx].unsqueeze(0) for f in feats["high_res_feats"]),
            prepared=prepared,
        )
        masks = self._transforms.postprocess_masks(low_res, self._orig_hw[img_idx])
        low_res = low_res.clamp(-32.0, 32.0)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low_res


def _to_numpy(
    masks: torch.Tensor, iou: torch.Tensor, low_res: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop a batch axis of one, and return float32 numpy arrays (official output)."""
    return tuple(t.squeeze(0).float().detach().cpu().numpy() for t in (masks, iou, low_res))  # type: ignore[return-value]
