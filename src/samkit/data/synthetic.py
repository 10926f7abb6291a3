"""Seeded synthetic images with genuinely ambiguous nested objects.

Each image has a textured background and 2–5 objects. An object is a *whole* shape
(ellipse, star-shaped polygon or rotated rounded rectangle) containing a *part* shape,
which contains a *subpart* shape, each painted with its own random colour/texture, so a
click on the subpart is ambiguous between three valid masks. Objects are painted in order;
later ones occlude earlier ones, and every mask of an earlier object loses the occluded
pixels. Masks smaller than ``min_mask_area`` are then dropped, and a part/subpart whose
visible pixels equal those of a coarser level of the same object is dropped as duplicate.

Mask conventions (image frame, ``(H, W)``):

* the whole's mask includes its part and subpart pixels, the part's includes the subpart
  (``subpart ⊂ part ⊂ whole`` for every object, occluded or not);
* ``Sample.masks`` is ordered object by object (painting order), each object's masks in
  level order, and ``Sample.levels`` gives 0 whole, 1 part, 2 subpart; every surviving
  object keeps its whole, so a level-0 mask starts a new object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from samkit.data.sa1b import write_sa1b
from samkit.data.types import Sample
from samkit.errors import InvalidArgument, InvalidConfig, InvalidMask
from samkit.fileio import atomic_write

__all__ = [
    "SyntheticConfig",
    "SyntheticDataset",
    "SyntheticObject",
    "compose",
    "generate_sample",
    "write_synthetic_dataset",
]

_SHAPES = ("ellipse", "polygon", "rounded_rect")


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic generator.

    Attributes:
        size: image ``(H, W)`` in pixels.
        objects: inclusive ``(min, max)`` number of objects per image.
        scale: ``(min, max)`` diameter of a whole object's bounding circle, as a fraction of
            ``min(H, W)``.
        child_scale: ``(min, max)`` radius of a part (subpart) relative to the largest disc
            that fits inside its parent around the chosen centre (values near 1 are
            clipped to the parent's interior, keeping a visible rim of the parent).
        min_mask_area: masks with fewer visible pixels are dropped.
        seed: default seed of :func:`write_synthetic_dataset` and :class:`SyntheticDataset`.
    """

    size: tuple[int, int] = (256, 256)
    objects: tuple[int, int] = (2, 5)
    scale: tuple[float, float] = (0.25, 0.6)
    child_scale: tuple[float, float] = (0.75, 1.05)
    min_mask_area: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 16:
            raise InvalidConfig(
                f"size must be (H, W) with both >= 16, got {self.size}", field="size"
            )
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise InvalidConfig(
                f"objects must be 1 <= min <= max, got {self.objects}", field="objects"
            )
        if not 0 < self.scale[0] <= self.scale[1]:
            raise InvalidConfig(f"scale must be 0 < min <= max, got {self.scale}", field="scale")
        if not 0 < self.child_scale[0] <= self.child_scale[1] <= 1.5:
            raise InvalidConfig(
                f"child_scale must be 0 < min <= max <= 1.5, got {self.child_scale}",
                field="child_scale",
            )


@dataclass(frozen=True)
class SyntheticObject:
    """One nested object before compositing.

    Attributes:
        masks: ``(L, H, W)`` bool, level order (whole first); each included in the previous.
        textures: ``(L, H, W, 3)`` uint8, the paint of each level (used where the level's
            mask is set and no deeper level's is).
    """

    masks: np.ndarray
    textures: np.ndarray = field(repr=False)


# --------------------------------------------------------------------------- textures


def _random_colour(rng: np.random.Generator, avoid: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A random RGB colour (float, 0..255) at least ~90 away from every colour in ``avoid``."""
    best, best_d = None, -1.0
    for _ in range(32):
        c = rng.uniform(0, 255, size=3)
        d = min((float(np.linalg.norm(c - a)) for a in avoid), default=1e9)
        if d >= 90:
            return c
        if d > best_d:
            best, best_d = c, d
    return best  # type: ignore[return-value]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """``(H, W)`` float in [0, 1]: Gaussian-smoothed white noise, rescaled."""
    n = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma=sigma, mode="wrap")
    lo, hi = n.min(), n.max()
    return (n - lo) / max(hi - lo, 1e-6)


def _texture(
    rng: np.random.Generator, h: int, w: int, base: np.ndarray, amount: float
) -> np.ndarray:
    """``(H, W, 3)`` float texture around colour ``base``: flat, stripes, gradient or noise.

    ``amount`` bounds the distance (RGB units) of the second colour from ``base``.
    """
    kind = rng.integers(4)
    second = np.clip(base + rng.uniform(-amount, amount, size=3), 0, 255)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # flat with light grain
        t = np.zeros((h, w), dtype=np.float32)
    elif kind == 1:  # stripes
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4, 16)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    elif kind == 2:  # linear gradient
        theta = rng.uniform(0, 2 * np.pi)
        proj = xx * np.cos(theta) + yy * np.sin(theta)
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    else:  # smooth noise
        t = _smooth_noise(rng, h, w, sigma=rng.uniform(2, 8))
    tex = base[None, None, :] * (1 - t[..., None]) + second[None, None, :] * t[..., None]
    tex = tex + rng.normal(0, 4, size=(h, w, 1))  # grain
    return tex


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- shapes


def _shape_mask(
    rng: np.random.Generator, h: int, w: int, cy: float, cx: float, radius: float
) -> np.ndarray:
    """``(H, W)`` bool random shape inside the disc of ``radius`` centred at ``(cy, cx)``."""
    kind = _SHAPES[rng.integers(len(_SHAPES))]
    theta = rng.uniform(0, np.pi)
    if kind == "polygon":
        n = int(rng.integers(5, 10))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=n))
        radii = radius * rng.uniform(0.6, 1.0, size=n)
        pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii, strict=True)]
        canvas = Image.new("L", (w, h), 0)
        ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in pts], fill=1)
        return np.asarray(canvas, dtype=bool)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)  # rotated frame
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if kind == "ellipse":
        a = radius
        b = radius * rng.uniform(0.5, 1.0)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    # rounded rectangle whose half-diagonal is ``radius``
    phi = rng.uniform(0.5, np.pi / 2 - 0.5)
    hx, hy = radius * np.cos(phi), radius * np.sin(phi)
    rc = rng.uniform(0.1, 0.45) * min(hx, hy)
    qx, qy = np.abs(u) - (hx - rc), np.abs(v) - (hy - rc)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    inside = np.minimum(np.maximum(qx, qy), 0)
    return outside + inside - rc <= 0


def _child_mask(
    rng: np.random.Generator, parent: np.ndarray, cfg: SyntheticConfig
) -> np.ndarray | None:
    """A random shape strictly inside ``parent`` (a rim of >= 3 px kept), or ``None``."""
    h, w = parent.shape
    # Distance to the parent's outside; the image border counts as outside.
    dist = ndimage.distance_transform_edt(np.pad(parent, 1))[1:-1, 1:-1]
    dmax = float(dist.max())
    if dmax < 5:
        return None
    for _ in range(8):
        ys, xs = np.nonzero(dist >= 0.8 * dmax)
        i = int(rng.integers(ys.size))
        cy, cx = float(ys[i]), float(xs[i])
        radius = float(dist[ys[i], xs[i]]) * rng.uniform(*cfg.child_scale)
        child = _shape_mask(rng, h, w, cy, cx, radius) & (dist >= max(3.0, 0.12 * dmax))
        if child.sum() >= max(cfg.min_mask_area, 1) and child.sum() < parent.sum():
            return child
    return None


def _random_object(
    rng: np.random.Generator, cfg: SyntheticConfig, avoid: np.ndarray
) -> SyntheticObject | None:
    """A whole/part/subpart object (fewer levels if a child does not fit)."""
    h, w = cfg.size
    diameter = rng.uniform(*cfg.scale) * min(h, w)
    radius = diameter / 2
    cy = rng.uniform(0.25 * radius, h - 0.25 * radius)
    cx = rng.uniform(0.25 * radius, w - 0.25 * radius)
    masks = [_shape_mask(rng, h, w, cy, cx, radius)]
    if masks[0].sum() < cfg.min_mask_area:
        return None
    for _ in range(2):
        child = _child_mask(rng, masks[-1], cfg)
        if child is None:
            break
        masks.append(child)
    colours: list[np.ndarray] = []
    textures = []
    for _ in masks:
        c = _random_colour(rng, avoid=[avoid, *colours])
        colours.append(c)
        textures.append(_to_uint8(_texture(rng, h, w, c, amount=50)))
    return SyntheticObject(masks=np.stack(masks), textures=np.stack(textures))


# --------------------------------------------------------------------------- compositing


def compose(
    background: np.ndarray,
    objects: Sequence[SyntheticObject],
    image_id: str,
    *,
    min_mask_area: int = 20,
) -> Sample:
    """Paint ``objects`` in order over ``background`` and return the visible masks.

    Args:
        background: ``(H, W, 3)`` uint8.
        objects: painted first to last; later objects occlude earlier ones.
        image_id: stored in the sample.
        min_mask_area: visible masks with fewer pixels are dropped.

    Returns:
        A :class:`Sample` with the composite image, the visible ``(M, H, W)`` masks (each
        earlier mask minus the union of all later objects' wholes) and their ``levels``.
        A part/subpart mask equal to a coarser surviving mask of its object is dropped.
    """
    image = background.copy()
    h, w = image.shape[:2]
    visible: list[list[np.ndarray]] = []
    for obj in objects:
        if obj.masks.shape[1:] != (h, w):
            raise InvalidMask(f"object masks {obj.masks.shape[1:]} do not match image {(h, w)}")
        cover = obj.masks[0]
        for masks in visible:
            for m in masks:
                m &= ~cover
        for level in range(obj.masks.shape[0]):
            paint = obj.masks[level]
            image[paint] = obj.textures[level][paint]
        visible.append([m.copy() for m in obj.masks])

    out_masks: list[np.ndarray] = []
    out_levels: list[int] = []
    for masks in visible:
        kept: list[np.ndarray] = []
        for level, m in enumerate(masks):
            if m.sum() < min_mask_area:
                break  # deeper levels are subsets, hence smaller still
            if any(np.array_equal(m, k) for k in kept):
                continue
            kept.append(m)
            out_masks.append(m)
            out_levels.append(level)
    stacked = np.stack(out_masks) if out_masks else np.zeros((0, h, w), dtype=bool)
    return Sample(
        image=image,
        masks=stacked,
        image_id=image_id,
        levels=np.asarray(out_levels, dtype=np.int64),
    )


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` uint8 background and its mean colour."""
    base = rng.uniform(0, 255, size=3)
    tex = _texture(rng, h, w, base, amount=70)
    if rng.random() < 0.5:  # extra large-scale blotches
        tex = tex + 40 * (_smooth_noise(rng, h, w, sigma=12)[..., None] - 0.5)
    img = _to_uint8(tex)
    return img, img.reshape(-1, 3).mean(0)


def generate_sample(
    rng: np.random.Generator, cfg: SyntheticConfig, image_id: str = "synthetic"
) -> Sample:
    """Draw one synthetic :class:`Sample` from ``rng`` (fully determined by its state).

    Returns an image ``(H, W, 3)`` uint8 with ``(H, W) = cfg.size``, nested visible masks
    ``(M, H, W)`` bool and ``levels`` ``(M,)`` int (see the module docstring).
    """
    h, w = cfg.size
    background, bg_colour = _background(rng, h, w)
    n = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    objects = []
    for _ in range(n):
        obj = _random_object(rng, cfg, avoid=bg_colour)
        if obj is not None:
            objects.append(obj)
    return compose(background, objects, image_id, min_mask_area=cfg.min_mask_area)


def _sample_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


class SyntheticDataset:
    """In-memory sequence of ``n`` synthetic samples; item ``i`` depends only on ``(seed, i)``."""

    def __init__(
        self,
        n: int,
        cfg: SyntheticConfig | None = None,
        *,
        seed: int | None = None,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        self.n = n
        self.cfg = cfg or SyntheticConfig()
        self.seed = self.cfg.seed if seed is None else seed
        self.transform = transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} samples")
        sample = generate_sample(_sample_rng(self.seed, index), self.cfg, f"synth_{index:06d}")
        return self.transform(sample) if self.transform is not None else sample


def write_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    n: int,
    cfg: SyntheticConfig | None = None,
    seed: int | None = None,
    *,
    image_format: str = "png",
) -> list[Path]:
    """Write ``n`` synthetic images and their SA-1B JSONs (with per-mask ``"level"``).

    Files are ``out_dir/synth_{i:06d}.{png|jpg}`` and ``.json``; sample ``i`` is
    ``SyntheticDataset(n, cfg, seed=seed)[i]`` (``seed`` defaults to ``cfg.seed``), so the
    output does not depend on ``n``. PNG keeps pixels exact; JPEG (quality 95) is lossy on
    the image only. Read back with :class:`~samkit.data.sa1b.SA1BDataset`.

    Returns:
        The JSON paths written, in index order.
    """
    fmt = image_format.lower()
    if fmt not in ("png", "jpg", "jpeg"):
        raise InvalidArgument(f"image_format must be png or jpg, got {image_format!r}")
    suffix = ".png" if fmt == "png" else ".jpg"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = SyntheticDataset(n, cfg, seed=seed)
    paths = []
    for i in range(n):
        sample = dataset[i]
        image_path = out / f"{sample.image_id}{suffix}"
        pil = Image.fromarray(sample.image)
        if suffix == ".png":
            atomic_write(image_path, lambda f, pil=pil: pil.save(f, format="PNG"))
        else:
            atomic_write(image_path, lambda f, pil=pil: pil.save(f, format="JPEG", quality=95))
        json_path = image_path.with_suffix(".json")
        write_sa1b(
            image_path, sample.masks, json_path, image_id=sample.image_id, levels=sample.levels
        )
        paths.append(json_path)
    return paths
