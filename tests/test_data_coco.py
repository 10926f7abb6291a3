"""COCO instances: polygons, RLE (compressed and uncompressed), crowd and empty images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samkit.data import CocoInstancesDataset
from samkit.data.coco import coco_segmentation_to_rle
from samkit.errors import InvalidDataset
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


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([{"image_id": 1, "bbox": [0, 0, 2, 2], "score": 0.9}], "JSON list, e.g. a detections"),
        ({"images": [], "annotations": {"id": 1}}, "must be lists"),
        ({"images": [{"file_name": "a.png"}], "annotations": []}, r"images\[0\] needs an 'id'"),
        ({"images": [{"id": [1], "file_name": "a.png"}], "annotations": []}, "needs an 'id'"),
        ({"images": [{"id": 1}], "annotations": []}, r"images\[0\] needs a 'file_name'"),
        (
            {"images": [{"id": 1, "file_name": "a.png", "height": "24"}], "annotations": []},
            r"images\[0\].height must be an integer",
        ),
        ({"images": [], "annotations": [{"id": 3}]}, r"annotations\[0\] needs an 'image_id'"),
        (
            {"images": [], "annotations": [{"id": 3, "image_id": 1, "bbox": [0, 0, 1, 1]}]},
            r"annotations\[0\] \(id 3\) has no 'segmentation'",
        ),
    ],
)
def test_malformed_coco_documents_are_invalid_dataset(tmp_path: Path, doc, message) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidDataset, match=message):
        CocoInstancesDataset(tmp_path, path)
    path.write_text("{not json")
    with pytest.raises(InvalidDataset, match="not a JSON file"):
        CocoInstancesDataset(tmp_path, path)


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ([], "empty polygon list"),
        ([[1, 2, 3]], "at least 3 points"),
        ([[1, 2, 3, 4]], "at least 3 points"),
        ([[1, 2, "3", 4, 5, 6]], "flat list of numbers"),
        ([[1, 2, float("nan"), 4, 5, 6]], "flat list of numbers"),
        ("abc", "not str"),
        ({"counts": "0"}, "needs 'size'"),
        ({"size": [24, 32], "counts": "zzzz"}, "characters outside"),
        ({"size": [24, 32], "counts": [5, 3]}, "sum to H"),
        ({"size": [10, 10], "counts": [100]}, r"RLE size \[10, 10\] is not the image's"),
    ],
)
def test_malformed_segmentations_name_the_annotation(tmp_path: Path, segmentation, message):
    """Each bad segmentation is one InvalidDataset naming the annotation (pycocotools
    raised bare Exceptions or IndexErrors for some, and decodes corrupt RLE strings
    without checking them)."""
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "a.png")
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "height": 24, "width": 32}],
        "annotations": [{"id": 7, "image_id": 1, "segmentation": segmentation}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    ds = CocoInstancesDataset(tmp_path, path)
    with pytest.raises(InvalidDataset, match=f"annotation id 7 of image 1: .*{message}"):
        ds[0]
    with pytest.raises(InvalidDataset, match=message):
        coco_segmentation_to_rle(segmentation, 24, 32)
