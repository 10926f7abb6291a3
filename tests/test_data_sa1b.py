"""SA-1B JSON I/O: RLE round trip, bbox/area, dataset discovery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samkit.data import SA1BDataset, read_sa1b, write_sa1b
from samkit.data.sa1b import encode_masks, load_rgb


def _write_image(path: Path, h: int, w: int, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(img).save(path)
    return img


def _hand_masks(h: int = 20, w: int = 30) -> np.ndarray:
    masks = np.zeros((3, h, w), dtype=bool)
    masks[0, 2:5, 3:8] = True  # 3 x 5 block: bbox [3, 2, 5, 3], area 15
    masks[1, 10:20, 25:30] = True  # touches the bottom-right corner
    masks[1, 0, 0] = True  # plus one isolated pixel: bbox spans everything
    masks[2, 7, 11] = True
    return masks


def test_round_trip_and_rle_matches_pycocotools(tmp_path: Path) -> None:
    img = _write_image(tmp_path / "sa_1.png", 20, 30)
    masks = _hand_masks()
    write_sa1b(tmp_path / "sa_1.png", masks, tmp_path / "sa_1.json")

    doc = json.loads((tmp_path / "sa_1.json").read_text())
    assert doc["image"] == {"image_id": "sa_1", "width": 30, "height": 20, "file_name": "sa_1.png"}
    for m, ann in zip(masks, doc["annotations"], strict=True):
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ann["segmentation"]["counts"] == ref["counts"].decode()
        assert ann["segmentation"]["size"] == [20, 30]
        x, y = ann["point_coords"][0]
        assert m[int(y), int(x)]
        assert ann["crop_box"] == [0.0, 0.0, 30.0, 20.0]

    sample = read_sa1b(tmp_path / "sa_1.json")
    assert sample.image_id == "sa_1"
    np.testing.assert_array_equal(sample.image, img)
    assert sample.masks.dtype == bool and sample.masks.shape == (3, 20, 30)
    np.testing.assert_array_equal(sample.masks, masks)
    assert sample.levels is None


def test_bbox_and_area(tmp_path: Path) -> None:
    _write_image(tmp_path / "a.png", 20, 30)
    doc = write_sa1b(tmp_path / "a.png", _hand_masks(), tmp_path / "a.json")
    anns = doc["annotations"]
    assert [a["area"] for a in anns] == [15, 51, 1]
    assert anns[0]["bbox"] == [3.0, 2.0, 5.0, 3.0]
    assert anns[1]["bbox"] == [0.0, 0.0, 30.0, 20.0]
    assert anns[2]["bbox"] == [11.0, 7.0, 1.0, 1.0]
    assert [a["id"] for a in anns] == [0, 1, 2]


def test_levels_and_extra_fields(tmp_path: Path) -> None:
    _write_image(tmp_path / "b.jpg", 20, 30)
    masks = _hand_masks()
    write_sa1b(
        tmp_path / "b.jpg",
        masks,
        tmp_path / "b.json",
        image_id=7,
        levels=[0, 1, 2],
        extra={"predicted_iou": np.array([0.9, 0.8, 0.7]), "tag": ["x", "y", "z"]},
    )
    anns = json.loads((tmp_path / "b.json").read_text())["annotations"]
    assert [a["predicted_iou"] for a in anns] == [0.9, 0.8, 0.7]
    assert [a["tag"] for a in anns] == ["x", "y", "z"]
    sample = read_sa1b(tmp_path / "b.json")
    assert sample.image_id == "7"
    np.testing.assert_array_equal(sample.levels, [0, 1, 2])
    np.testing.assert_array_equal(sample.masks, masks)  # JPEG is lossy; masks are not


def test_empty_masks_and_errors(tmp_path: Path) -> None:
    _write_image(tmp_path / "c.png", 8, 9)
    write_sa1b(tmp_path / "c.png", np.zeros((0, 8, 9), bool), tmp_path / "c.json")
    sample = read_sa1b(tmp_path / "c.json")
    assert sample.masks.shape == (0, 8, 9)
    with pytest.raises(ValueError):
        write_sa1b(tmp_path / "c.png", np.zeros((1, 9, 8), bool), tmp_path / "c.json")
    with pytest.raises(ValueError):
        write_sa1b(tmp_path / "c.png", np.zeros((2, 8, 9), bool), tmp_path / "c.json", levels=[0])


def test_dataset_discovers_sorted_pairs(tmp_path: Path) -> None:
    masks = _hand_masks()
    for stem in ("sa_2", "sa_10", "sa_1"):
        _write_image(tmp_path / f"{stem}.png", 20, 30)
        write_sa1b(tmp_path / f"{stem}.png", masks, tmp_path / f"{stem}.json")
    (tmp_path / "orphan.json").write_text("{}")  # no image: ignored
    (tmp_path / "sa_3.png").write_bytes(b"")  # no JSON: ignored
    ds = SA1BDataset(tmp_path)
    assert len(ds) == 3
    assert [p.stem for p in ds.json_paths] == ["sa_1", "sa_10", "sa_2"]
    assert ds[-1].image_id == "sa_2"
    np.testing.assert_array_equal(ds[0].masks, masks)
    with pytest.raises(IndexError):
        ds[3]


def _exif_rotated_jpeg(path: Path) -> np.ndarray:
    """A 20x40 JPEG stored as is with EXIF orientation 6 (shown rotated 90 degrees
    clockwise, 40x20); returns the stored pixels as PIL decodes them."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = 250  # a bright band on the stored image's left
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(path, exif=exif.tobytes(), quality=100)
    with Image.open(path) as again:
        return np.asarray(again.convert("RGB"))


def test_exif_oriented_images_read_as_samkit_auto_sees_them(tmp_path: Path) -> None:
    """Masks made on the oriented image (samkit segment/auto read images with their EXIF
    orientation applied) are written and read back on that image; annotations drawn on
    the stored pixels still find the stored pixels."""
    stored = _exif_rotated_jpeg(tmp_path / "rot.jpg")
    oriented = np.rot90(stored, k=-1)  # orientation 6: rotate 90 degrees clockwise
    masks = np.zeros((1, 40, 20), bool)
    masks[0, :10] = True  # the band is at the top once rotated
    write_sa1b(tmp_path / "rot.jpg", masks, tmp_path / "rot.json")
    doc = json.loads((tmp_path / "rot.json").read_text())
    assert (doc["image"]["height"], doc["image"]["width"]) == (40, 20)
    sample = read_sa1b(tmp_path / "rot.json")
    np.testing.assert_array_equal(sample.image, oriented)
    assert sample.image[:10].mean() > 200 and sample.image[12:].mean() < 50
    np.testing.assert_array_equal(sample.masks, masks)
    assert load_rgb(tmp_path / "rot.jpg").shape == (40, 20, 3)
    assert load_rgb(tmp_path / "rot.jpg", (40, 20)).shape == (40, 20, 3)
    np.testing.assert_array_equal(load_rgb(tmp_path / "rot.jpg", (20, 40)), stored)
    # size in neither frame: the oriented image (the reader then reports the mismatch)
    assert load_rgb(tmp_path / "rot.jpg", (7, 7)).shape == (40, 20, 3)

    stored_masks = np.zeros((1, 20, 40), bool)
    stored_masks[0, :, :10] = True
    doc["image"].update(height=20, width=40)
    doc["annotations"][0]["segmentation"] = encode_masks(stored_masks)[0]
    (tmp_path / "raw.json").write_text(json.dumps(doc))
    raw = read_sa1b(tmp_path / "raw.json")
    np.testing.assert_array_equal(raw.image, stored)
    np.testing.assert_array_equal(raw.masks, stored_masks)


def test_16_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    """A 16-bit PNG reads as samkit segment/auto read it (v / 257), not clipped to
    white by PIL's conversion."""
    values = np.array([[0, 257, 25700], [32896, 51400, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I;16")
    expected = np.repeat(np.array([[0, 1, 100], [128, 200, 255]], np.uint8)[..., None], 3, 2)
    np.testing.assert_array_equal(load_rgb(tmp_path / "deep.png"), expected)
    masks = np.zeros((1, 2, 3), bool)
    masks[0, 0] = True
    write_sa1b(tmp_path / "deep.png", masks, tmp_path / "deep.json")
    np.testing.assert_array_equal(read_sa1b(tmp_path / "deep.json").image, expected)


def test_dataset_pairs_any_image_suffix_and_linked_images(tmp_path: Path) -> None:
    """Every suffix samkit auto reads, in any case, pairs with a JSON of the same stem;
    a JSON elsewhere whose image.file_name names an existing image (samkit auto --out
    writes them so) is found too; a JSON with neither is not a sample."""
    mask = np.zeros((1, 6, 8), bool)
    mask[0, 1:4, 2:6] = True
    names = ["a.bmp", "b.TIF", "c.webp", "d.Jpg", "e.tiff"]
    for name in names:
        Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(tmp_path / name)
        write_sa1b(tmp_path / name, mask, tmp_path / f"{Path(name).stem}.json")
    out = tmp_path / "masks"
    out.mkdir()
    write_sa1b(tmp_path / "a.bmp", mask, out / "a.json")  # file_name "../a.bmp"
    (out / "orphan.json").write_text(json.dumps({"image": {"file_name": "gone.png"}}))
    ds = SA1BDataset(tmp_path)
    assert [p.name for p in ds.json_paths] == [f"{Path(n).stem}.json" for n in names]
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds[i].masks, mask)
    linked = SA1BDataset(out)
    assert [p.name for p in linked.json_paths] == ["a.json"]
    assert linked[0].image.shape == (6, 8, 3)
