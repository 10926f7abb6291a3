"""COCO instances: polygons, RLE (compressed and uncompressed), crowd and empty images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from samkit.data import CocoInstancesDataset
from samkit.masks import decode_rle_objects


def _write(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    h, w = 24, 32
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(tmp_path / name)
    rle_mask = np.zeros((h, w), np.uint8)
    rle_mask[10:20, 2:6] = 1
    compressed = mask_utils.encode(np.asfortranarray(rle_mask))
    compressed["counts"] = compressed["counts"].decode()
    uncompressed_mask = np.zeros((h, w), np.uint8)
    uncompressed_mask[0:3, 0:4] = 1  # column-major runs: 3 on, 21 off, x4, then off
    counts = [0] + [3, 21] * 3 + [3, h * w - (3 * 24 + 3)]
    polygon = [[4.0, 4.0, 14.0, 4.0, 14.0, 9.0, 4.0, 9.0]]
    doc = {
        "images": [
            {"id": 5, "file_name": "a.png", "height": h, "width": w},
            {"id": 2, "file_name": "b.png", "height": h, "width": w},
            {"id": 9, "file_name": "c.png", "height": h, "width": w},  # crowd only
            {"id": 11, "file_name": "missing.png", "height": h, "width": w},  # no anns
        ],
        "annotations": [
            {"id": 1, "image_id": 5, "iscrowd": 0, "segmentation": polygon, "category_id": 1},
            {"id": 2, "image_id": 5, "iscrowd": 1, "category_id": 1,
             "segmentation": {"size": [h, w], "counts": [0, h * w]}},
            {"id": 3, "image_id": 5, "iscrowd": 0, "segmentation": compressed, "category_id": 2},
            {"id": 4, "image_id": 2, "iscrowd": 0, "category_id": 2,
             "segmentation": {"size": [h, w], "counts": counts}},
            {"id": 5, "image_id": 9, "iscrowd": 1, "category_id": 1,
             "segmentation": {"size": [h, w], "counts": [0, h * w]}},
        ],
    }  # fmt: skip
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    ref_poly = decode_rle_objects(mask_utils.merge(mask_utils.frPyObjects(polygon, h, w)))
    return path, ref_poly.astype(bool), rle_mask.astype(bool), uncompressed_mask.astype(bool)


def test_coco_instances(tmp_path: Path) -> None:
    ann_path, ref_poly, rle_mask, uncompressed_mask = _write(tmp_path)
    ds = CocoInstancesDataset(tmp_path, ann_path)
    assert len(ds) == 2  # image 9 (crowd only) and 11 (no annotations) skipped
    assert [ds[i].image_id for i in range(2)] == ["2", "5"]  # sorted by COCO id

    first = ds[0]
    assert first.masks.shape == (1, 24, 32)
    np.testing.assert_array_equal(first.masks[0], uncompressed_mask)

    sample = ds[1]
    assert sample.image.shape == (24, 32, 3) and sample.levels is None
    assert sample.masks.shape == (2, 24, 32)  # crowd instance skipped
    np.testing.assert_array_equal(sample.masks[0], ref_poly)
    # the axis-aligned rectangle polygon covers roughly its 10 x 5 interior
    assert 40 <= ref_poly.sum() <= 66 and ref_poly[6, 8] and not ref_poly[2, 2]
    np.testing.assert_array_equal(sample.masks[1], rle_mask)


def test_coco_images_with_exif_orientation(tmp_path: Path) -> None:
    """``images[].height/width`` choose the frame of an EXIF-rotated image: the oriented
    one (how samkit auto exports) or the stored pixels (annotations drawn on them)."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = 250
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=100)
    docs = {}
    for name, (h, w) in {"oriented": (40, 20), "stored": (20, 40)}.items():
        mask = np.zeros((h, w), np.uint8)
        if name == "oriented":
            mask[:10] = 1
        else:
            mask[:, :10] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode()
        docs[name] = mask.astype(bool)
        doc = {
            "images": [{"id": 1, "file_name": "rot.jpg", "height": h, "width": w}],
            "annotations": [{"id": 1, "image_id": 1, "iscrowd": 0, "segmentation": rle}],
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        sample = CocoInstancesDataset(tmp_path, tmp_path / f"{name}.json")[0]
        assert sample.image.shape == (h, w, 3)
        np.testing.assert_array_equal(sample.masks[0], docs[name])
        # the bright band lies under the mask in both frames
        assert sample.image[docs[name]].mean() > 200 and sample.image[~docs[name]].mean() < 50
