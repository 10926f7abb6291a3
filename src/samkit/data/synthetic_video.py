"""Synthetic video clips of moving shapes with an occluder (training and evaluating video
models offline).

A clip is ``T`` frames of one textured, slowly varying background over which ``N``
textured shapes (the same random shapes, textures and colours as
:mod:`samkit.data.synthetic`) move on straight lines, bouncing off the frame's borders.
Objects are painted in order, later ones over earlier ones. With ``occluder=True`` the
last object is an *occluder*: a larger shape aimed so that at the clip's middle frame it
lies over object 0 (it moves with object 0's velocity plus a relative one that takes it
clear of object 0 about four frames before and after), so object 0 is partly or wholly
hidden for a few frames and re-appears afterwards -- the case a tracker's memory and object-score head must handle.

Every object carries its *visible* mask per frame (its full shape minus the shapes
painted after it) and its full (amodal) mask. Everything is a deterministic function of
the generator's state; :class:`SyntheticVideoDataset` seeds clip ``i`` with
``(seed, i)``, so any clip can be regenerated without the others.

Frames are ``(H, W, 3)`` uint8 RGB; masks are bool in the same pixel frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from samkit.data.synthetic import (
    _background,
    _random_colour,
    _shape_mask,
    _smooth_noise,
    _texture,
    _to_uint8,
)
from samkit.errors import InvalidArgument, InvalidConfig

__all__ = [
    "SyntheticClip",
    "SyntheticVideoConfig",
    "SyntheticVideoDataset",
    "generate_clip",
    "write_synthetic_clips",
]


@dataclass(frozen=True)
class SyntheticVideoConfig:
    """Parameters of :func:`generate_clip`.

    Attributes:
        size: ``(H, W)`` of the frames.
        num_frames: frames per clip.
        objects: inclusive range of moving objects per clip (not counting the occluder).
        scale: range of object diameters as a fraction of ``min(H, W)``.
        occluder_scale: the occluder's diameter range (same unit).
        speed: range of speeds in pixels per frame.
        occluder: add an occluder that crosses object 0 at the middle frame.
        background_drift: pixels per frame by which the background pans (camera motion).
        noise: standard deviation of per-frame pixel noise (RGB units).
    """

    size: tuple[int, int] = (256, 256)
    num_frames: int = 8
    objects: tuple[int, int] = (1, 2)
    scale: tuple[float, float] = (0.15, 0.4)
    occluder_scale: tuple[float, float] = (0.3, 0.5)
    speed: tuple[float, float] = (1.0, 8.0)
    occluder: bool = True
    background_drift: float = 1.0
    noise: float = 3.0

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise InvalidConfig("num_frames must be >= 1", field="num_frames")
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise InvalidConfig(
                "objects must be a range (lo, hi) with 1 <= lo <= hi", field="objects"
            )
        if min(self.size) < 16:
            raise InvalidConfig("frames must be at least 16 x 16", field="size")


@dataclass(frozen=True)
class SyntheticClip:
    """One synthetic clip.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        masks: ``(N, T, H, W)`` bool visible masks, object ``n`` on frame ``t``.
        amodal: ``(N, T, H, W)`` bool full shapes (occluded parts included).
        occluder: index of the occluder in ``masks`` (the last object), or ``None``.
    """

    frames: np.ndarray
    masks: np.ndarray
    amodal: np.ndarray
    occluder: int | None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_objects(self) -> int:
        return int(self.masks.shape[0])

    def visible(self, obj: int) -> np.ndarray:
        """``(T,)`` bool: whether object ``obj`` has any visible pixel on each frame."""
        return self.masks[obj].reshape(self.num_frames, -1).any(axis=1)


@dataclass
class _Sprite:
    shape: np.ndarray  # (P, P) bool
    texture: np.ndarray  # (P, P, 3) uint8
    centres: np.ndarray  # (T, 2) float (y, x) of the patch centre per frame


def _sprite(rng: np.random.Generator, diameter: float, avoid: list[np.ndarray]) -> tuple:
    """A random shape of ``diameter`` in a square patch, and its texture (maybe with an
    inner part of another colour)."""
    p = int(np.ceil(diameter)) + 4
    c = (p - 1) / 2
    shape = _shape_mask(rng, p, p, c, c, diameter / 2)
    if not shape.any():
        shape[p // 2, p // 2] = True
    colour = _random_colour(rng, avoid=avoid)
    tex = _texture(rng, p, p, colour, amount=50)
    if rng.random() < 0.5 and diameter >= 16:  # an inner part, painted in another colour
        inner = _shape_mask(rng, p, p, c, c, diameter * rng.uniform(0.15, 0.3)) & shape
        if inner.any():
            tex[inner] = _texture(rng, p, p, _random_colour(rng, avoid=[colour]), 30)[inner]
    return shape, _to_uint8(tex), colour


def _bounce(start: np.ndarray, velocity: np.ndarray, lo: np.ndarray, hi: np.ndarray, t: int):
    """``(t, 2)`` positions of a point moving at ``velocity`` inside ``[lo, hi]``,
    reflected at the bounds."""
    pos = np.empty((t, 2))
    p, v = start.astype(float).copy(), velocity.astype(float).copy()
    for i in range(t):
        pos[i] = p
        p = p + v
        for d in range(2):
            if p[d] < lo[d]:
                p[d], v[d] = 2 * lo[d] - p[d], -v[d]
            elif p[d] > hi[d]:
                p[d], v[d] = 2 * hi[d] - p[d], -v[d]
    return pos


def _paste(frame: np.ndarray, mask: np.ndarray, sprite: _Sprite, t: int) -> None:
    """Paint ``sprite`` on ``frame`` (and set ``mask``) at its position on frame ``t``."""
    h, w = mask.shape
    p = sprite.shape.shape[0]
    y0 = int(round(sprite.centres[t, 0] - (p - 1) / 2))
    x0 = int(round(sprite.centres[t, 1] - (p - 1) / 2))
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + p, h), min(x0 + p, w)
    if ys >= ye or xs >= xe:
        return
    sub = sprite.shape[ys - y0 : ye - y0, xs - x0 : xe - x0]
    frame[ys:ye, xs:xe][sub] = sprite.texture[ys - y0 : ye - y0, xs - x0 : xe - x0][sub]
    mask[ys:ye, xs:xe] |= sub


def generate_clip(rng: np.random.Generator, cfg: SyntheticVideoConfig) -> SyntheticClip:
    """Draw one :class:`SyntheticClip` from ``rng`` (fully determined by its state)."""
    h, w = cfg.size
    t_len = cfg.num_frames
    drift = cfg.background_drift * t_len
    pad = int(np.ceil(drift)) + 1
    big, bg_colour = _background(rng, h + 2 * pad, w + 2 * pad)
    angle = rng.uniform(0, 2 * np.pi)
    pan = np.stack([np.sin(angle), np.cos(angle)]) * cfg.background_drift
    light = 20 * (_smooth_noise(rng, h, w, sigma=20) - 0.5)  # a fixed shading

    sprites: list[_Sprite] = []
    colours: list[np.ndarray] = [bg_colour]
    n = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    side = min(h, w)
    for _ in range(n):
        diameter = rng.uniform(*cfg.scale) * side
        shape, tex, colour = _sprite(rng, diameter, colours)
        colours.append(colour)
        r = diameter / 2
        lo, hi = np.array([r * 0.5, r * 0.5]), np.array([h - r * 0.5, w - r * 0.5])
        start = rng.uniform(lo, hi)
        speed = rng.uniform(*cfg.speed)
        theta = rng.uniform(0, 2 * np.pi)
        velocity = speed * np.array([np.sin(theta), np.cos(theta)])
        sprites.append(_Sprite(shape, tex, _bounce(start, velocity, lo, hi, t_len)))
    occluder = None
    if cfg.occluder:
        diameter = rng.uniform(*cfg.occluder_scale) * side
        shape, tex, _ = _sprite(rng, diameter, colours)
        mid = t_len // 2
        base = sprites[0].centres
        target = base[mid] + rng.normal(0, 0.1 * diameter, size=2)
        follow = base[min(mid + 1, t_len - 1)] - base[max(mid - 1, 0)]
        follow = follow / max(min(mid + 1, t_len - 1) - max(mid - 1, 0), 1)
        # relative speed: clear of object 0 about min(mid, 4) frames before/after ``mid``
        reach = (diameter + 2 * float(np.sqrt(sprites[0].shape.sum() / np.pi))) / 2
        speed = reach / max(min(mid, 4), 1) * rng.uniform(0.8, 1.3)
        theta = rng.uniform(0, 2 * np.pi)
        velocity = follow + speed * np.array([np.sin(theta), np.cos(theta)])
        centres = target[None, :] + (np.arange(t_len) - mid)[:, None] * velocity[None, :]
        sprites.append(_Sprite(shape, tex, centres))
        occluder = len(sprites) - 1

    frames = np.empty((t_len, h, w, 3), dtype=np.uint8)
    amodal = np.zeros((len(sprites), t_len, h, w), dtype=bool)
    for t in range(t_len):
        oy, ox = (pad + pan * (t - t_len / 2)).round().astype(int)
        oy, ox = int(np.clip(oy, 0, 2 * pad)), int(np.clip(ox, 0, 2 * pad))
        frame = big[oy : oy + h, ox : ox + w].astype(np.float32) + light[..., None]
        canvas = _to_uint8(frame)
        for i, sprite in enumerate(sprites):
            _paste(canvas, amodal[i, t], sprite, t)
        if cfg.noise > 0:
            canvas = _to_uint8(canvas + rng.normal(0, cfg.noise, size=canvas.shape))
        frames[t] = canvas
    visible = amodal.copy()
    for i in range(len(sprites)):
        for j in range(i + 1, len(sprites)):
            visible[i] &= ~amodal[j]
    return SyntheticClip(frames=frames, masks=visible, amodal=amodal, occluder=occluder)


class SyntheticVideoDataset:
    """``n`` clips; clip ``i`` is :func:`generate_clip` with ``default_rng([seed, i])``."""

    def __init__(self, n: int, seed: int = 0, config: SyntheticVideoConfig | None = None):
        if n < 0:
            raise InvalidArgument("n must be >= 0")
        self.n = n
        self.seed = seed
        self.config = config or SyntheticVideoConfig()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> SyntheticClip:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return generate_clip(np.random.default_rng([self.seed, index]), self.config)

    def __iter__(self) -> Iterator[SyntheticClip]:
        for i in range(self.n):
            yield self[i]


def write_synthetic_clips(
    out_dir: str | os.PathLike[str],
    n: int,
    config: SyntheticVideoConfig | None = None,
    seed: int = 0,
    image_format: str = "png",
) -> list[Path]:
    """Write ``n`` clips of ``SyntheticVideoDataset(n, seed, config)`` for trying tracking.

    Clip ``i`` becomes a folder ``out_dir/clip_{i:06d}/`` of frames ``00000.png``, ...
    (``image_format="jpg"``: ``00000.jpg``, ... at quality 95, the frame folders the
    official SAM 2 video predictor reads; both are what ``samkit track`` and
    :meth:`~samkit.video.VideoPredictor.start` read) and
    ``out_dir/clip_{i:06d}.json`` with, per object, its id (``1 + index``; the occluder is
    marked), a suggested first click (``[x, y]``: the pixel of its frame-0 mask farthest
    from the boundary, ``null`` if it is not visible on frame 0) and its visible masks
    per frame as COCO RLE. Files are written atomically.

    Returns:
        The JSON paths, in index order.
    """
    from samkit.eval.metrics import click_point_farthest_from_boundary
    from samkit.fileio import atomic_write, atomic_write_json
    from samkit.masks import masks_to_coco_rle

    if image_format not in ("png", "jpg"):
        raise InvalidArgument(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    save = {"format": "PNG"} if image_format == "png" else {"format": "JPEG", "quality": 95}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = SyntheticVideoDataset(n, seed=seed, config=config)
    paths = []
    for i, clip in enumerate(dataset):
        name = f"clip_{i:06d}"
        folder = out / name
        folder.mkdir(exist_ok=True)
        for t, frame in enumerate(clip.frames):
            pil = Image.fromarray(frame)
            path = folder / f"{t:05d}.{image_format}"
            atomic_write(path, lambda f, pil=pil: pil.save(f, **save))
        objects = []
        for k in range(clip.num_objects):
            first = clip.masks[k, 0]
            click = list(click_point_farthest_from_boundary(first)) if first.any() else None
            objects.append(
                {
                    "id": k + 1,
                    "occluder": k == clip.occluder,
                    "first_frame_click": click,
                    "masks": masks_to_coco_rle(clip.masks[k]),
                }
            )
        record = {
            "clip": name,
            "frames": name,
            "num_frames": clip.num_frames,
            "size": list(clip.frames.shape[1:3]),
            "seed": seed,
            "index": i,
            "objects": objects,
        }
        path = out / f"{name}.json"
        atomic_write_json(path, record)
        paths.append(path)
    return paths
