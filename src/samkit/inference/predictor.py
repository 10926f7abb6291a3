"""``ImagePredictor``: encode an image once, then decode prompts in milliseconds.

Coordinates are (x, y) in original-image pixels. Results are numpy arrays at the original
resolution. The predictor holds at most one current :class:`ImageEmbedding`; every
``predict`` call can instead take an ``embedding=`` argument.

Tensors the predictor returns (``ImageEmbedding.features``, :meth:`predict_torch`) are
made under ``torch.no_grad`` (as the official predictor), not ``torch.inference_mode``:
they can be used in autograd (e.g. a trained head on the embedding) and changed in place.
``predict`` / ``predict_batch``, which return numpy arrays, decode under
``torch.inference_mode``.

Thread-safety: ``encode`` and ``predict(..., embedding=e)`` may run concurrently on one
predictor (torch releases the GIL in kernels). ``set_image`` / ``set_embedding`` replace
the current embedding; calls that rely on it from other threads see either the old or
the new one, never a mix. A server should cache :class:`ImageEmbedding` objects and pass
them explicitly.

Prompt-independent decoder work (``SamModel.prepare_decoding``: the first two-way block's
image-side projections, about a fifth of a SAM decode on the CPU) is done on the first
prompt of an embedding and kept for the following ones; the predictor keeps it for one
embedding at a time (about 14 MiB for SAM), replaced in one assignment, so concurrent
calls on different embeddings stay correct but redo it whenever they alternate.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from samkit.errors import InvalidImage, NoImageSet
from samkit.inference.prompts import (
    ArrayLike,
    PromptTensors,
    input_frame_prompts,
    prepare_prompts,
)
from samkit.inference.transforms import ImageLike, to_rgb_uint8
from samkit.modeling import SamModel
from samkit.modeling.mask_decoder import PreparedImage
from samkit.types import BatchMaskPrediction, ImageEmbedding, MaskPrediction


def preprocess_image(
    model: SamModel, image: ImageLike
) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """Image -> normalised ``(1, 3, S, S)`` model input, original and input sizes.

    The resize is the model family's (SAM 1: longest side to S, padded; SAM 2: a square
    resize). Training (:mod:`samkit.train`) prepares its images with this too.
    """
    rgb = to_rgb_uint8(image)
    original_size = (int(rgb.shape[0]), int(rgb.shape[1]))
    x, input_size = model.prepare_image(rgb)
    return x, original_size, input_size


class ImagePredictor:
    """Prompted segmentation of single images with a SAM-family model."""

    def __init__(self, model: SamModel, *, check_bounds: bool = True) -> None:
        """``check_bounds``: reject points/boxes outside the image (``InvalidPrompt``).

        The official predictor accepts them silently; :mod:`samkit.compat` turns the
        check off to behave the same. The model is switched to eval mode (a predictor
        is for inference; :class:`samkit.amg.MaskGenerator` makes one, so it does too);
        the official predictors, and :mod:`samkit.compat`'s, leave the mode alone.
        """
        self.model = model.eval()
        self.check_bounds = check_bounds
        self._embedding: ImageEmbedding | None = None
        # The decoder's prompt-independent work for the last embedding decoded without a
        # mask prompt (``SamModel.prepare_decoding``), made on its first prompt.
        self._prepared: PreparedImage | None = None

    # ------------------------------------------------------------------ images
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def embedding(self) -> ImageEmbedding | None:
        """The current embedding (``None`` until ``set_image``/``set_embedding``)."""
        return self._embedding

    def preprocess(self, image: ImageLike) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """:func:`preprocess_image` with this predictor's model."""
        return preprocess_image(self.model, image)

    @torch.no_grad()
    def encode(self, image: ImageLike) -> ImageEmbedding:
        """Run the image encoder; returns a new embedding and changes no state."""
        x, original_size, input_size = self.preprocess(image)
        features, high_res = self.model.embed_image(x)
        # Channels-last storage (same shape and values): the mask decoder reads the
        # embedding token-major, (1, h*w, C), so every decode then starts from a view
        # instead of a 4 MiB transposing copy.
        features = features.contiguous(memory_format=torch.channels_last)
        return ImageEmbedding(features, original_size, input_size, self.model.name, tuple(high_res))

    def set_image(self, image: ImageLike) -> ImageEmbedding:
        """Encode ``image`` and make it the current image; returns its embedding."""
        embedding = self.encode(image)
        self._embedding = embedding
        return embedding

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Use a previously computed (e.g. cached or loaded) embedding."""
        self._embedding = self._check_embedding(embedding)

    def reset(self) -> None:
        """Forget the current image (and the decoder work prepared for it)."""
        self._embedding = None
        self._prepared = None

    def _check_embedding(self, embedding: ImageEmbedding) -> ImageEmbedding:
        if not isinstance(embedding, ImageEmbedding):
            raise InvalidImage("expected a samkit.ImageEmbedding")
        if (
            embedding.model_name is not None
            and self.model.name is not None
            and embedding.model_name != self.model.name
        ):
            raise InvalidImage(
                f"embedding was computed by {embedding.model_name!r}, "
                f"this predictor runs {self.model.name!r}"
            )
        features = embedding.features
        pe = self.model.prompt_encoder
        if (
            not isinstance(features, torch.Tensor)
            or features.dim() != 4
            or features.shape[0] != 1
            or not features.is_floating_point()
        ):
            what = (
                f"{features.dtype} {tuple(features.shape)}"
                if isinstance(features, torch.Tensor)
                else type(features).__name__
            )
            raise InvalidImage(
                f"embedding features must be a (1, C, h, w) float tensor, got {what}"
            )
        if features.shape[1] != pe.embed_dim:
            raise InvalidImage(
                f"embedding has {features.shape[1]} channels, the model expects {pe.embed_dim}"
            )
        expected = pe.image_embedding_size
        if tuple(features.shape[-2:]) != tuple(expected):
            raise InvalidImage(
                f"embedding has spatial size {tuple(features.shape[-2:])}, "
                f"the model expects {tuple(expected)}"
            )
        if min(embedding.original_size) < 1 or min(embedding.input_size) < 1:
            raise InvalidImage(
                f"embedding has original size {embedding.original_size} and input size "
                f"{embedding.input_size}: both must be positive (H, W)"
            )
        expected_input = tuple(self.model.input_size_for(embedding.original_size))
        if tuple(embedding.input_size) != expected_input:
            raise InvalidImage(
                f"embedding has input size {embedding.input_size} for an image of "
                f"{embedding.original_size}; this model resizes it to {expected_input}"
            )
        high_res = embedding.high_res_features
        if self.model.mask_decoder.use_high_res_features:
            h, w = expected
            want = [(4 * h, 4 * w), (2 * h, 2 * w)]  # SAM 2's stride-4 and stride-8 maps
            got = [
                tuple(t.shape[-2:]) if isinstance(t, torch.Tensor) and t.dim() == 4 else None
                for t in high_res
            ]
            if got != want:
                raise InvalidImage(
                    f"this model decodes with two high-resolution feature maps of sizes "
                    f"{want}; the embedding has {got}"
                )
            high_res = tuple(t.to(self.device, torch.float32) for t in high_res)
        elif features.device != self.device:
            high_res = tuple(t.to(self.device) for t in high_res)
        features = features.to(self.device, torch.float32)  # the same tensor if it already is
        if features is not embedding.features or any(
            a is not b for a, b in zip(high_res, embedding.high_res_features, strict=True)
        ):
            embedding = replace(embedding, features=features, high_res_features=high_res)
        return embedding

    def _current(self, embedding: ImageEmbedding | None) -> ImageEmbedding:
        if embedding is not None:
            return self._check_embedding(embedding)
        current = self._embedding
        if current is None:
            raise NoImageSet("call set_image(image) or set_embedding(...) before predicting")
        return current

    # ----------------------------------------------------------------- prompts
    def predict(
        self,
        points: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        box: ArrayLike | None = None,
        mask_input: ArrayLike | None = None,
        multimask: bool = True,
        return_logits: bool = False,
        embedding: ImageEmbedding | None = None,
    ) -> MaskPrediction:
        """Masks for one prompt set.

        Args:
            points: ``(P, 2)`` (x, y) in original pixels; ``labels``: ``(P,)`` with
                1 = foreground, 0 = background.
            box: ``(4,)`` x0, y0, x1, y1 in original pixels.
            mask_input: ``(1, 256, 256)`` low-res logits from a previous prediction.
            multimask: three candidates for an ambiguous prompt (recommended for a single
                click); ``False`` returns the single-output mask.
            return_logits: return float logits instead of bool masks.
            embedding: decode against this embedding instead of the current image.

        Returns:
            :class:`MaskPrediction` with ``masks`` (K, H, W), ``scores`` (K,) and
            ``low_res_logits`` (K, 256, 256), K = 3 or 1, in decoder order.
        """
        emb = self._current(embedding)
        prompts = self._prompts(emb, points, labels, box, mask_input, batched=False)
        masks, scores, low_res = self._decode(emb, prompts, multimask, return_logits)
        return MaskPrediction(masks[0], scores[0], low_res[0])

    def predict_batch(
        self,
        points: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        boxes: ArrayLike | None = None,
        mask_input: ArrayLike | None = None,
        multimask: bool = True,
        return_logits: bool = False,
        embedding: ImageEmbedding | None = None,
    ) -> BatchMaskPrediction:
        """Masks for N prompt sets in one decoder call.

        ``points`` ``(N, P, 2)`` with ``labels`` ``(N, P)`` (use label -1 to pad sets
        with fewer points), ``boxes`` ``(N, 4)``, ``mask_input`` ``(N, 1, 256, 256)``;
        whichever are given must agree on N. Returns masks ``(N, K, H, W)``.
        """
        emb = self._current(embedding)
        prompts = self._prompts(emb, points, labels, boxes, mask_input, batched=True)
        masks, scores, low_res = self._decode(emb, prompts, multimask, return_logits)
        return BatchMaskPrediction(masks, scores, low_res)

    def _prompts(self, emb, points, labels, boxes, mask_input, batched) -> PromptTensors:
        pe = self.model.prompt_encoder
        return prepare_prompts(
            points=points,
            labels=labels,
            boxes=boxes,
            mask_input=mask_input,
            original_size=emb.original_size,
            input_size=emb.input_size,
            mask_size=pe.mask_input_size,
            device=self.device,
            batched=batched,
            check_bounds=self.check_bounds,
        )

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        embedding: ImageEmbedding | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tensor-level decode with prompts already in the *input* frame.

        Shapes: ``point_coords`` (N, P, 2), ``point_labels`` (N, P), ``boxes`` (N, 4),
        ``mask_input`` (N, 1, 256, 256). Returns masks (N, K, H, W) (bool unless
        ``return_logits``), IoU (N, K), low-res logits (N, K, 256, 256).
        """
        emb = self._current(embedding)
        prompts = input_frame_prompts(
            point_coords,
            point_labels,
            boxes,
            mask_input,
            mask_size=self.model.prompt_encoder.mask_input_size,
            device=self.device,
        )
        return self._run(emb, prompts, multimask_output, return_logits)

    def _run(
        self, emb: ImageEmbedding, prompts: PromptTensors, multimask: bool, return_logits: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode and upsample: masks (N, K, H, W), IoU (N, K), low-res (N, K, 256, 256).
        Called under ``torch.no_grad`` or ``torch.inference_mode``."""
        prepared = None if prompts.mask_input is not None else self._prepared_for(emb)
        low_res, iou = self.model.decode(
            emb.features,
            points=prompts.points,
            boxes=prompts.boxes,
            mask_input=prompts.mask_input,
            multimask_output=multimask,
            high_res_features=emb.high_res_features,
            prepared=prepared,
        )
        masks = self.model.postprocess_masks(low_res, emb.input_size, emb.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        limit = self.model.low_res_logit_limit
        if limit is not None:
            low_res = low_res.clamp(-limit, limit)
        return masks, iou, low_res

    def _prepared_for(self, emb: ImageEmbedding) -> PreparedImage | None:
        """The decoder's prompt-independent work for ``emb`` (kept for the next call)."""
        prepared = self.model.prepare_decoding(emb.features, reuse=self._prepared)
        self._prepared = prepared  # one assignment: other threads see old or new
        return prepared

    @torch.inference_mode()  # results leave as numpy arrays: the cheaper mode is safe
    def _decode(
        self, emb: ImageEmbedding, prompts: PromptTensors, multimask: bool, return_logits: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        masks, iou, low_res = self._run(emb, prompts, multimask, return_logits)
        return masks.cpu().numpy(), iou.float().cpu().numpy(), low_res.float().cpu().numpy()
