"""Drop-in names of the official ``segment_anything`` API, backed by samkit.

Migrate by changing one import::

    # from segment_anything import sam_model_registry, SamPredictor
    from samkit.compat import sam_model_registry, SamPredictor

    sam = sam_model_registry["vit_b"](checkpoint="sam_vit_b_01ec64.pth")
    predictor = SamPredictor(sam)
    predictor.set_image(image)                       # HxWx3 uint8, "RGB" or "BGR"
    masks, scores, logits = predictor.predict(point_coords=..., point_labels=...,
                                              multimask_output=True)

Method and argument names, return types (numpy from ``predict``, torch from
``predict_torch``) and output order are the official ones. ``build_sam`` /
``build_sam_vit_{h,l,b}``, ``SamAutomaticMaskGenerator`` (:mod:`samkit.compat.sam_amg`)
and the model's own batched call ``sam(batched_input, multimask_output)`` are there too. Loading uses
``torch.load(weights_only=True)`` and strict key checks.

The official SAM 2 / 2.1 names (package ``sam2``) are here too, from
:mod:`samkit.compat.sam2_build`, :mod:`samkit.compat.sam2_predictor` and
:mod:`samkit.compat.sam2_amg`: ``build_sam2``, ``build_sam2_hf``, ``SAM2ImagePredictor`` and
``SAM2AutomaticMaskGenerator``::

    # from sam2.build_sam import build_sam2
    # from sam2.sam2_image_predictor import SAM2ImagePredictor
    # from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from samkit.compat import build_sam2, SAM2ImagePredictor, SAM2AutomaticMaskGenerator

    model = build_sam2("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt")
    predictor = SAM2ImagePredictor(model)           # or .from_pretrained("facebook/...")
    predictor.set_image(image)                      # HxWx3 uint8 RGB or PIL
    masks, scores, low_res = predictor.predict(point_coords=..., point_labels=...)
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from samkit.build import build_model, load_model
from samkit.compat._generator import mode_kept
from samkit.compat.sam2_amg import SAM2AutomaticMaskGenerator
from samkit.compat.sam2_build import build_sam2, build_sam2_hf
from samkit.compat.sam2_predictor import SAM2ImagePredictor
from samkit.compat.sam_amg import SamAutomaticMaskGenerator
from samkit.errors import InvalidImage, NoImageSet
from samkit.inference.predictor import ImagePredictor
from samkit.inference.transforms import coords_to_input, preprocess_shape
from samkit.modeling.sam import Sam
from samkit.types import ImageEmbedding

__all__ = [
    "ResizeLongestSide",
    "SAM2AutomaticMaskGenerator",
    "SAM2ImagePredictor",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "build_sam",
    "build_sam2",
    "build_sam2_hf",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "sam_model_registry",
]


def _builder(name: str) -> Callable[..., Sam]:
    def build(checkpoint: str | os.PathLike[str] | None = None) -> Sam:
        if checkpoint is None:
            return build_model(name)
        return load_model(name, checkpoint=checkpoint)

    build.__name__ = f"build_{name.replace('-', '_')}"
    build.__doc__ = f"Build {name!r}; with ``checkpoint`` load it strictly."
    return build


sam_model_registry: dict[str, Callable[..., Sam]] = {
    "default": _builder("sam-vit-h"),
    "vit_h": _builder("sam-vit-h"),
    "vit_l": _builder("sam-vit-l"),
    "vit_b": _builder("sam-vit-b"),
    "vit_t": _builder("mobile-sam"),
}
# the official module-level builders (build_sam is ViT-H, as officially)
build_sam_vit_h = sam_model_registry["vit_h"]
build_sam_vit_l = sam_model_registry["vit_l"]
build_sam_vit_b = sam_model_registry["vit_b"]
build_sam = build_sam_vit_h


class ResizeLongestSide:
    """Coordinate helpers with the official names (``predictor.transform``)."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        return preprocess_shape(oldh, oldw, long_side_length)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        from samkit.inference.transforms import resize_longest_side

        return resize_longest_side(image, self.target_length)

    def _new(self, original_size: tuple[int, ...]) -> tuple[int, int]:
        return preprocess_shape(int(original_size[0]), int(original_size[1]), self.target_length)

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        size = (int(original_size[0]), int(original_size[1]))
        return coords_to_input(coords, size, self._new(size))

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_coords_torch(
        self, coords: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        old_h, old_w = int(original_size[0]), int(original_size[1])
        new_h, new_w = self._new((old_h, old_w))
        coords = coords.clone().to(torch.float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes_torch(
        self, boxes: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)


class SamPredictor:
    """The official ``SamPredictor`` interface on top of :class:`samkit.ImagePredictor`."""

    def __init__(self, sam_model: Sam) -> None:
        self.model = sam_model
        with mode_kept(sam_model):  # as officially (ImagePredictor switches to eval)
            self._predictor = ImagePredictor(sam_model, check_bounds=False)
        self.transform = ResizeLongestSide(sam_model.image_size)

    # Official attributes -------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def is_image_set(self) -> bool:
        return self._predictor.embedding is not None

    # ``None`` without an image (as after the official ``reset_image``)
    @property
    def features(self) -> torch.Tensor | None:
        emb = self._predictor.embedding
        return None if emb is None else emb.features

    @property
    def original_size(self) -> tuple[int, int] | None:
        emb = self._predictor.embedding
        return None if emb is None else emb.original_size

    @property
    def input_size(self) -> tuple[int, int] | None:
        emb = self._predictor.embedding
        return None if emb is None else emb.input_size

    # Vestigial official attributes: ``reset_image`` sets them to None and nothing
    # else sets them, so they are always None there too (use ``original_size``).
    orig_h: None = None
    orig_w: None = None
    input_h: None = None
    input_w: None = None

    def _require(self) -> ImageEmbedding:
        emb = self._predictor.embedding
        if emb is None:
            raise NoImageSet("An image must be set with .set_image(...) before mask prediction.")
        return emb

    # Official methods ------------------------------------------------------------
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an ``HxWxC`` uint8 image given in ``image_format`` ("RGB" or "BGR").

        Only the three colour channels are swapped: a grayscale ``(H, W)`` /
        ``(H, W, 1)`` image is the same in both formats, and BGRA keeps its alpha last
        (the official code, which takes ``HxWx3`` only, reverses the last axis).
        """
        if image_format not in ("RGB", "BGR"):
            raise InvalidImage(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if image_format != self.model.image_format:
            if not isinstance(image, np.ndarray):
                raise InvalidImage(
                    f"image_format={image_format!r} needs a numpy array (a PIL image or a "
                    "path is RGB already: pass image_format='RGB')"
                )
            if image.ndim == 3 and image.shape[2] in (3, 4):
                image = image[..., [2, 1, 0, *range(3, image.shape[2])]]
        self._predictor.set_image(image)

    @torch.no_grad()
    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Encode an already resized ``(1, 3, H', W')`` 0-255 tensor (longest side
        ``image_size``, as ``self.transform.apply_image`` gives); anything else raises
        :class:`~samkit.errors.InvalidImage` (the official code asserts)."""
        s = self.model.image_size
        shape = tuple(transformed_image.shape)
        if len(shape) != 4 or shape[:2] != (1, 3) or max(shape[2:]) != s or min(shape[2:]) < 1:
            raise InvalidImage(
                f"set_torch_image input must be (1, 3, H, W) with long side {s}, got {shape}"
            )
        input_size = (int(transformed_image.shape[-2]), int(transformed_image.shape[-1]))
        x = self.model.preprocess(transformed_image.to(self.device).float())
        features = self.model.encode_image(x)
        original = (int(original_image_size[0]), int(original_image_size[1]))
        self._predictor.set_embedding(
            ImageEmbedding(features, original, input_size, self.model.name)
        )

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``(masks CxHxW, iou_predictions C, low_res_masks Cx256x256)``.
        ``point_labels`` without ``point_coords`` are ignored, as officially."""
        self._require()
        res = self._predictor.predict(
            points=point_coords,
            labels=None if point_coords is None else point_labels,
            box=box,
            mask_input=mask_input,
            multimask=multimask_output,
            return_logits=return_logits,
        )
        return res.masks, res.scores, res.low_res_logits

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts already transformed to the input frame (``self.transform``)."""
        self._require()
        return self._predictor.predict_torch(
            point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
        )

    def get_image_embedding(self) -> torch.Tensor:
        """The current ``(1, 256, 64, 64)`` image embedding."""
        return self._require().features

    def reset_image(self) -> None:
        self._predictor.reset()
