"""``samkit auto`` and the SA-1B / COCO I/O of generated masks.

The CLI tests use a tiny random model registered in-process as ``auto-test-tiny``. With
random weights every mask's predicted IoU is ~0.3, its stability score ~0 and its box the
whole image, so the official defaults keep nothing and box NMS keeps one mask. The tests
therefore run with ``--pred-iou-thresh 0 --stability-score-thresh 0 --box-nms-thresh 1``
(no filtering) and ``--points-per-side 2``: 4 points x 3 candidates = 12 masks per image,
and every test checks that masks were written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tiny_models import assert_cli_error, save_and_register_tiny
from typer.testing import CliRunner

import samkit
from samkit.amg import MaskGenerator
from samkit.cli.auto import METADATA_HEADER, collect_inputs
from samkit.cli.main import app
from samkit.data.sa1b import (
    COCO_CATEGORY,
    export_coco,
    read_amg_json,
    write_amg_json,
    write_sa1b,
)
from samkit.masks import rle_encode

TINY = "auto-test-tiny"
H, W = 48, 64  # non-square on purpose
MASKS_PER_IMAGE = 12  # --points-per-side 2: 4 points x 3 candidates, nothing filtered
KEEP_ALL = (
    "--pred-iou-thresh",
    "0",
    "--stability-score-thresh",
    "0",
    "--box-nms-thresh",
    "1",
    "--points-per-side",
    "2",
)

runner = CliRunner()
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.usefixtures("cli_isolated"),  # private cache, cwd = tmp (conftest.py)
]


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save the tiny random model and register it as ``auto-test-tiny``."""
    return save_and_register_tiny(
        tmp_path_factory.mktemp("auto-weights"),
        TINY,
        "https://example.invalid/samkit/auto-test-tiny.pth",
        "tiny random model for the samkit auto tests",
    )


def make_image(path: Path, seed: int = 0, size: tuple[int, int] = (H, W)) -> Path:
    """A noisy RGB image with a bright rectangle, saved (format from the suffix)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
    pixels[10:30, 15:45] = (220, 200, 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG" if path.suffix != ".jpg" else "JPEG")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``in/`` with two images of different sizes."""
    make_image(tmp_path / "in" / "a.png", 0)
    make_image(tmp_path / "in" / "b.jpg", 1, (40, 56))
    return tmp_path / "in"


def auto(checkpoint: Path, *args: str | os.PathLike[str]):
    """``samkit auto`` with the tiny model, no filtering and no progress bar."""
    argv = ["auto", *map(str, args), "-m", TINY, "-c", str(checkpoint), *KEEP_ALL]
    return runner.invoke(app, [*argv, "--no-progress"])


def decode(segmentation: dict) -> np.ndarray:
    """COCO RLE with str counts -> (H, W) bool, with pycocotools itself."""
    rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def age(folder: Path) -> None:
    """Set every output's mtime an hour back, so a rewrite is visible in the mtime."""
    for p in folder.rglob("*"):
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 10**9))


# ---------------------------------------------------------------- write/read_amg_json
def _hand_records() -> list[dict]:
    """Three records, one per segmentation kind (binary, uncompressed RLE, COCO RLE)."""
    masks = np.zeros((3, 20, 30), dtype=bool)
    masks[0, 2:5, 3:8] = True
    masks[1, 10:20, 25:30] = True
    masks[2, 7, 11] = True
    segs = [
        masks[0],
        rle_encode(torch.from_numpy(masks[1:2]))[0],
        {
            "size": [20, 30],
            "counts": mask_utils.encode(np.asfortranarray(masks[2].astype(np.uint8)))["counts"],
        },
    ]
    records = []
    for i, (mask, seg) in enumerate(zip(masks, segs, strict=True)):
        ys, xs = np.nonzero(mask)
        records.append(
            {
                "segmentation": seg,
                "area": np.int64(mask.sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)), int(np.ptp(ys))],
                "predicted_iou": np.float32(0.9 - 0.1 * i),
                "point_coords": [[float(xs[0]), float(ys[0])]],
                "stability_score": 0.8 + 0.05 * i,
                "crop_box": [0, 0, 30, 20],
            }
        )
    records[2]["level"] = 2  # extra fields are kept
    return records, masks


def test_write_read_amg_json_round_trip(tmp_path: Path) -> None:
    records, masks = _hand_records()
    info = {"image_id": "img", "file_name": "img.png", "width": 30, "height": 20}
    doc = write_amg_json(tmp_path / "img.json", records, info)

    on_disk = json.loads((tmp_path / "img.json").read_text())
    assert on_disk == doc
    assert on_disk["image"] == info
    info_back, back = read_amg_json(tmp_path / "img.json")
    assert info_back == info
    assert [r["id"] for r in back] == [0, 1, 2]
    for mask, rec, orig in zip(masks, back, records, strict=True):
        assert isinstance(rec["segmentation"]["counts"], str)
        assert rec["segmentation"]["size"] == [20, 30]
        np.testing.assert_array_equal(decode(rec["segmentation"]), mask)
        assert rec["area"] == int(mask.sum()) == orig["area"]
        assert rec["bbox"] == [float(v) for v in orig["bbox"]]
        assert rec["predicted_iou"] == pytest.approx(float(orig["predicted_iou"]))
        assert rec["stability_score"] == pytest.approx(orig["stability_score"])
        assert rec["point_coords"] == orig["point_coords"]
        assert rec["crop_box"] == [0.0, 0.0, 30.0, 20.0]
    assert back[2]["level"] == 2 and "level" not in back[0]


def test_write_amg_json_rejects_bad_records(tmp_path: Path) -> None:
    records, _ = _hand_records()
    info = {"file_name": "img.png", "width": 31, "height": 20}
    with pytest.raises(ValueError, match="size"):
        write_amg_json(tmp_path / "x.json", records, info)
    del records[0]["bbox"]
    with pytest.raises(ValueError, match="record 0 has no bbox"):
        write_amg_json(tmp_path / "x.json", records, dict(info, width=30))
    with pytest.raises(ValueError, match="height"):
        write_amg_json(tmp_path / "x.json", [], {"file_name": "a.png", "width": 3})
    assert not (tmp_path / "x.json").exists()
    # No records is fine; image_id defaults to the file stem.
    doc = write_amg_json(tmp_path / "x.json", [], {"file_name": "a.png", "width": 3, "height": 2})
    assert doc == {
        "image": {"image_id": "a", "file_name": "a.png", "width": 3, "height": 2},
        "annotations": [],
    }


def test_read_amg_json_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "coco.json").write_text(json.dumps({"images": [], "annotations": []}))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="no 'image' object"):
        read_amg_json(tmp_path / "coco.json")
    with pytest.raises(ValueError, match="not a JSON file"):
        read_amg_json(tmp_path / "junk.json")


def test_export_coco_ids_counts_and_categories(tmp_path: Path) -> None:
    records, masks = _hand_records()
    data = tmp_path / "data"
    data.mkdir()
    # Written out of name order; c has no annotations.
    for name, recs in (("c", []), ("b", records[:1]), ("a", records)):
        info = {"image_id": name, "file_name": f"{name}.png", "width": 30, "height": 20}
        write_amg_json(data / f"{name}.json", recs, info)
    out = data / "coco.json"
    doc = export_coco(data, out)

    assert [im["id"] for im in doc["images"]] == [1, 2, 3]
    assert [im["file_name"] for im in doc["images"]] == ["a.png", "b.png", "c.png"]
    assert all((im["width"], im["height"]) == (30, 20) for im in doc["images"])
    assert doc["categories"] == [COCO_CATEGORY] == [{"id": 1, "name": "object"}]
    anns = doc["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3, 4]
    assert [a["image_id"] for a in anns] == [1, 1, 1, 2]
    for ann, rec in zip(anns, [*records, records[0]], strict=True):
        assert ann["category_id"] == 1 and ann["iscrowd"] == 0
        assert ann["score"] == ann["predicted_iou"] == pytest.approx(float(rec["predicted_iou"]))
        assert ann["area"] == rec["area"]
        for key in ("stability_score", "point_coords", "crop_box"):
            assert key in ann

    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == 4 and len(coco.getImgIds()) == 3
    assert len(coco.getAnnIds(imgIds=[3])) == 0
    np.testing.assert_array_equal(coco.annToMask(coco.anns[2]).astype(bool), masks[1])

    # Deterministic: the folder export skips its own output; a list gives the same ids;
    # a file folder elsewhere gets file names re-based.
    first = out.read_bytes()
    export_coco(data, out)
    assert out.read_bytes() == first
    listed = export_coco([data / "c.json", data / "a.json", data / "b.json"], tmp_path / "l.json")
    assert listed["annotations"] == doc["annotations"]
    assert [im["file_name"] for im in listed["images"]] == [
        "data/a.png",
        "data/b.png",
        "data/c.png",
    ]
    with pytest.raises(ValueError, match="one of the inputs"):
        export_coco([data / "a.json"], data / "a.json")


# ---------------------------------------------------------------- CLI: outputs
def test_single_image_sa1b(checkpoint: Path, tmp_path: Path) -> None:
    image = make_image(tmp_path / "photo.png")
    result = auto(checkpoint, image, "--out", tmp_path / "masks")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "1 done, 0 skipped, 0 failed of 1 images" in result.stdout
    assert f"{MASKS_PER_IMAGE} masks" in result.stdout

    info, records = read_amg_json(tmp_path / "masks" / "photo.json")
    assert info == {"image_id": "photo", "file_name": "../photo.png", "width": W, "height": H}
    assert (tmp_path / "masks" / info["file_name"]).resolve() == image.resolve()
    assert len(records) == MASKS_PER_IMAGE
    for rec in records:
        mask = decode(rec["segmentation"])
        assert mask.shape == (H, W)
        ys, xs = np.nonzero(mask)
        assert rec["area"] == mask.sum() > 0
        # The official generator's bbox: inclusive pixel box, w = x_max - x_min.
        assert rec["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert rec["crop_box"] == [0, 0, W, H]

    # Same masks as the library's generator with the same settings.
    sam = samkit.load_model(TINY, checkpoint=checkpoint)
    expected = MaskGenerator(
        sam, points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0, box_nms_thresh=1
    ).generate(image)
    assert [r["area"] for r in records] == [r["area"] for r in expected]
    for rec, exp in zip(records, expected, strict=True):
        np.testing.assert_array_equal(decode(rec["segmentation"]), exp["segmentation"])


def test_compile_gives_the_same_masks(checkpoint: Path, tmp_path: Path) -> None:
    """``--compile`` runs the generator on ``samkit.compile_model``'s model (the image
    encoder under torch.compile, on the CPU here): the same records."""
    image = make_image(tmp_path / "photo.png")
    plain = auto(checkpoint, image, "--out", tmp_path / "plain")
    compiled = auto(checkpoint, image, "--out", tmp_path / "compiled", "--compile")
    assert plain.exit_code == 0 and compiled.exit_code == 0, compiled.output
    _, want = read_amg_json(tmp_path / "plain" / "photo.json")
    _, got = read_amg_json(tmp_path / "compiled" / "photo.json")
    assert len(got) == len(want) == MASKS_PER_IMAGE
    for a, b in zip(want, got, strict=True):
        assert (decode(a["segmentation"]) != decode(b["segmentation"])).mean() <= 1e-3
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-4


def test_folder_with_corrupt_image_continues(
    checkpoint: Path, folder: Path, tmp_path: Path
) -> None:
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image, not an input")
    result = auto(checkpoint, folder, "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"skipped {folder / 'bad.jpg'}: "), lines
    assert "Traceback" not in result.output
    assert "2 done, 0 skipped, 1 failed of 3 images" in result.stdout
    assert f"{2 * MASKS_PER_IMAGE} masks" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "b.json"]
    for name, (h, w) in (("a", (H, W)), ("b", (40, 56))):
        info, records = read_amg_json(tmp_path / "out" / f"{name}.json")
        assert (info["height"], info["width"]) == (h, w)
        assert len(records) == MASKS_PER_IMAGE


def test_resume_skips_and_overwrite_rewrites(
    checkpoint: Path, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert auto(checkpoint, folder, "--out", out, "--overlay").exit_code == 0
    age(out)
    before = mtimes(out)
    assert len(before) == 4

    again = auto(checkpoint, folder, "--out", out, "--overlay")
    assert again.exit_code == 0, again.output
    assert "2 of 2 images already done" in again.stdout
    assert "0 done, 2 skipped, 0 failed of 2 images; 0 masks" in again.stdout
    assert mtimes(out) == before

    # A new image in the folder: only it is processed.
    make_image(folder / "c.png", 2)
    more = auto(checkpoint, folder, "--out", out, "--overlay")
    assert "1 done, 2 skipped" in more.stdout
    after = mtimes(out)
    assert {k: after[k] for k in before} == before and "c.json" in after

    redo = auto(checkpoint, folder, "--out", out, "--overlay", "--overwrite")
    assert redo.exit_code == 0, redo.output
    assert "3 done, 0 skipped" in redo.stdout
    rewritten = mtimes(out)
    assert all(rewritten[k] > before[k] for k in before)
    assert len(read_amg_json(out / "a.json")[1]) == MASKS_PER_IMAGE


def test_format_coco(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = auto(checkpoint, folder, "--out", out, "--format", "coco")
    assert result.exit_code == 0, result.output
    assert f"({2} images, {2 * MASKS_PER_IMAGE} masks)" in result.stdout
    assert (out / "a.json").is_file() and (out / "b.json").is_file()

    coco = COCO(str(out / "coco_annotations.json"))
    assert len(coco.getAnnIds()) == 2 * MASKS_PER_IMAGE
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == ["../in/a.png", "../in/b.jpg"]
    assert coco.loadCats(coco.getCatIds()) == [{"id": 1, "name": "object"}]
    _, records = read_amg_json(out / "b.json")
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[2]))
    assert [a["area"] for a in anns] == [r["area"] for r in records]
    assert coco.annToMask(anns[0]).shape == (40, 56)

    # Resumed with nothing to do: the COCO file is not rewritten either.
    age(out)
    before = mtimes(out)
    assert auto(checkpoint, folder, "--out", out, "--format", "coco").exit_code == 0
    assert mtimes(out) == before


def test_format_png(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = auto(checkpoint, folder, "--out", out, "--format", "png")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]  # no temp folder left
    for name, shape in (("a", (H, W)), ("b", (40, 56))):
        rows = (out / name / "metadata.csv").read_text().splitlines()
        assert rows[0] == METADATA_HEADER
        assert len(rows) - 1 == MASKS_PER_IMAGE
        pngs = sorted(out.joinpath(name).glob("*.png"), key=lambda p: int(p.stem))
        assert [p.stem for p in pngs] == [str(i) for i in range(MASKS_PER_IMAGE)]
        for path, row in zip(pngs, rows[1:], strict=True):
            with Image.open(path) as im:
                assert im.mode == "L" and im.size == shape[::-1]
                mask = np.asarray(im)
            assert set(np.unique(mask)) <= {0, 255}
            fields = row.split(",")
            assert len(fields) == 14 and fields[0] == path.stem
            assert int(fields[1]) == np.count_nonzero(mask) > 0

    # --overwrite replaces the folders (atomically), leaving nothing else behind.
    (out / "a" / "stale.png").write_bytes(b"x")
    redo = auto(checkpoint, folder, "--out", out, "--format", "png", "--overwrite")
    assert redo.exit_code == 0, redo.output
    assert not (out / "a" / "stale.png").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]

    # a folder of the user's in the way (no metadata.csv) is never replaced, not even
    # with --overwrite (it was deleted with everything in it)
    mine = tmp_path / "mine"
    (mine / "a").mkdir(parents=True)
    (mine / "a" / "notes.txt").write_text("keep me")
    for extra in ((), ("--overwrite",)):
        result = auto(checkpoint, folder, "--out", mine, "--format", "png", *extra)
        assert_cli_error(result, f"{mine / 'a'} exists but is not a samkit output")
        assert (mine / "a" / "notes.txt").read_text() == "keep me"


def test_overlay(checkpoint: Path, tmp_path: Path) -> None:
    image = make_image(tmp_path / "photo.png")
    result = auto(checkpoint, image, "--out", tmp_path / "o", "--overlay", "--format", "png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "o" / "photo.overlay.png") as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (W, H)
        picture = np.asarray(im)
    with Image.open(image) as im:
        original = np.asarray(im)
    assert not np.array_equal(picture, original)  # the masks are painted on


def test_glob_input(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    make_image(folder / "c.png", 2)
    result = auto(checkpoint, str(folder / "*.png"), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "2 done, 0 skipped, 0 failed of 2 images" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "c.json"]
    assert collect_inputs(str(folder / "*.png")) == [folder / "a.png", folder / "c.png"]


def test_out_dir_equal_to_input_folder(checkpoint: Path, folder: Path) -> None:
    """Allowed when no input is overwritten; overlays written there are not inputs later."""
    result = auto(checkpoint, folder, "--out", folder, "--overlay")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["a.json", "a.overlay.png", "a.png", "b.jpg", "b.json", "b.overlay.png"]
    again = auto(checkpoint, folder, "--out", folder, "--overlay")
    assert again.exit_code == 0, again.output
    assert "0 done, 2 skipped, 0 failed of 2 images" in again.stdout
    assert sorted(p.name for p in folder.iterdir()) == names


def _sa1b_ground_truth(path: Path) -> None:
    """An annotation file of the SA-1B dataset itself: integer ids."""
    doc = {
        "image": {"image_id": 7, "width": W, "height": H, "file_name": "a.png"},
        "annotations": [{"id": 902, "area": 1, "bbox": [0, 0, 1, 1]}],
    }
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "write",
    [
        lambda path: path.write_text('{"shapes": [], "imagePath": "a.png"}'),  # labelme
        _sa1b_ground_truth,
        # samkit's own dataset JSON (samkit synth), not a samkit auto output
        lambda path: write_sa1b(path.parent / "a.png", np.ones((1, H, W), bool), path),
        lambda path: path.write_bytes(b"\xff not json"),
    ],
    ids=["labelme", "sa1b-dataset", "write-sa1b", "not-json"],
)
@pytest.mark.parametrize("fmt", ["sa1b", "coco"])
def test_never_skips_or_replaces_a_json_samkit_did_not_write(
    checkpoint: Path, folder: Path, fmt: str, write
) -> None:
    """With --out the input folder, a user's own <stem>.json was taken as done (skipped)
    and --overwrite replaced it: both are refused, before any output is written."""
    write(folder / "a.json")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for extra in ([], ["--overwrite"]):
        result = auto(checkpoint, folder, "--out", folder, "--format", fmt, *extra)
        assert_cli_error(result, f"{folder / 'a.json'} exists but is not a samkit output")
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_resume_recognises_its_json_for_a_symlinked_input(checkpoint: Path, tmp_path: Path) -> None:
    """The JSON names the resolved image (a link's target): a rerun must still take it
    as done, and --overwrite replace it (both were refused as "not a samkit output")."""
    store = make_image(tmp_path / "store" / "SHA256E-s1--abc.png", 0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "cat.png").symlink_to(store)
    out = tmp_path / "out"
    assert auto(checkpoint, inputs, "--out", out, "--format", "sa1b").exit_code == 0
    again = auto(checkpoint, inputs, "--out", out, "--format", "sa1b")
    assert again.exit_code == 0, again.output
    assert "1 of 1 images already done" in again.stdout
    redo = auto(checkpoint, inputs, "--out", out, "--format", "sa1b", "--overwrite")
    assert redo.exit_code == 0, redo.output
    assert "1 done" in redo.stdout


def test_never_replaces_a_coco_file_samkit_did_not_write(
    checkpoint: Path, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "coco_annotations.json"
    mine.write_text('{"images": [], "annotations": [], "categories": []}')
    result = auto(checkpoint, folder, "--out", out, "--format", "coco")
    assert_cli_error(result, f"{mine} exists but is not a samkit output")
    assert [p.name for p in out.iterdir()] == ["coco_annotations.json"]


def test_refuses_to_overwrite_an_input(checkpoint: Path, tmp_path: Path) -> None:
    # An image whose name is what the output would be called, in the output folder.
    image = make_image(tmp_path / "pic.json")
    data = image.read_bytes()
    assert_cli_error(auto(checkpoint, image, "--out", tmp_path), "would overwrite the input", "pic")
    assert image.read_bytes() == data
    # A link in --out that points at an input.
    make_image(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.json").symlink_to(tmp_path / "in" / "a.png")
    assert_cli_error(
        auto(checkpoint, tmp_path / "in", "--out", tmp_path / "out", "--overwrite"),
        "would overwrite the input",
    )


# ---------------------------------------------------------------- CLI: errors
def test_duplicate_stems(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    make_image(folder / "a.jpg", 3)
    result = auto(checkpoint, folder, "--out", tmp_path / "out")
    assert_cli_error(result, "same name stem 'a'", "a.jpg", "a.png")
    assert not (tmp_path / "out").exists()


def test_unknown_model(folder: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["auto", str(folder), "-o", "out", "-m", "sam-vit-z"])
    assert_cli_error(result, "unknown model 'sam-vit-z'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["missing.png"], "input not found: missing.png"),
        (["in/*.gif"], "no image files match"),
        (["empty"], "no images"),
        (["in", "--box-nms-thresh", "1.5"], "--box-nms-thresh must be between 0 and 1"),
        (["in", "--points-per-side", "0"], "--points-per-side must be at least 1"),
        (
            ["in", "--points-per-side", "99999999999999999999"],
            "--points-per-side 99999999999999999999 is too large",
        ),
        (["in", "--points-per-side", "9" * 400], "--points-per-side 999"),
        (["in", "--crop-overlap-ratio", "1"], "--crop-overlap-ratio must be in [0, 1)"),
        (["in", "--stability-score-offset", "-1"], "--stability-score-offset must be at least 0"),
        (["in", "--device", "toaster"], "--device"),
        (["in", "-c", "nope.pth"], "checkpoint not found"),
        (["in", "--device", "meta"], "--device meta"),
        (
            ["in", "--points-per-side", "2", "--crop-layers", "1", "--crop-points-downscale", "4"],
            "crop layer 1 would get no points",
        ),
        (
            [
                "in",
                "--points-per-side",
                "8",
                "--crop-layers",
                "4",
                "--crop-points-downscale",
                "2",
            ],
            "crop layer 4 would get no points",
        ),
        (["in", "--crop-layers", "1000000000"], "--crop-layers must be at most 5 (1,364 crops"),
        (["in", "--crop-layers", "14", "--points-per-side", "1"], "--crop-layers must be at most"),
    ],
)
def test_bad_input_and_options(
    checkpoint: Path, folder: Path, tmp_path: Path, args: list[str], fragment: str
) -> None:
    (tmp_path / "empty").mkdir()
    argv = ["auto", *args, "--out", "out", "-m", TINY, "--no-progress"]
    if "-c" not in args:
        argv += ["-c", str(checkpoint)]
    assert_cli_error(runner.invoke(app, argv), fragment)
    assert not (tmp_path / "out").exists()


def test_out_of_memory_is_one_line(
    checkpoint: Path, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A point grid too large for memory is one line before any image (a huge
    --points-per-side used to end in numpy's MemoryError traceback); running out of
    memory on an image skips that image, as a CUDA out-of-memory does."""

    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    with monkeypatch.context() as patch:
        patch.setattr("samkit.amg.generator.build_all_layer_point_grids", no_memory)
        result = auto(checkpoint, folder, "--out", tmp_path / "out")
        assert_cli_error(result, "not enough memory", "--points-per-side 2")
    monkeypatch.setattr(MaskGenerator, "stream", no_memory)
    result = auto(checkpoint, folder, "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all("out of memory" in line for line in lines), lines
    assert "Traceback" not in result.output
    assert "0 done, 0 skipped, 2 failed of 2 images" in result.stdout


@pytest.mark.usefixtures("offline")
def test_failed_model_download_leaves_no_out_folder(
    checkpoint: Path, folder: Path, tmp_path: Path
) -> None:
    """--out used to be created before the model loaded: a failed download left it empty."""
    out = tmp_path / "new" / "masks"
    result = runner.invoke(app, ["auto", str(folder), "-o", str(out), "-m", TINY, "--no-progress"])
    assert_cli_error(result, "could not download", TINY)
    assert not (tmp_path / "new").exists()


def test_progress_bar_is_hidden_when_stderr_is_not_a_terminal(
    checkpoint: Path, folder: Path, tmp_path: Path
) -> None:
    """As in samkit track: redirected stderr gets no bar, only the skipped images."""
    (folder / "bad.jpg").write_bytes(b"not a jpeg")
    argv = ["auto", str(folder), "-o", str(tmp_path / "out"), "-m", TINY, "-c", str(checkpoint)]
    result = runner.invoke(app, [*argv, *KEEP_ALL, "--progress"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"skipped {folder / 'bad.jpg'}: "), lines
    assert "━" not in result.stderr  # the bar's characters
    assert "2 done, 0 skipped, 1 failed of 3 images" in result.stdout


def test_out_is_a_file(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    assert_cli_error(auto(checkpoint, folder, "--out", tmp_path / "out"), "must be a folder")


def test_help_lists_auto() -> None:
    result = runner.invoke(app, ["auto", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--format", "--overlay", "--points-per-side", "--overwrite", "--crop-layers"):
        assert option in result.output


def test_default_model_keeps_masks_on_the_sample(tmp_path: Path) -> None:
    """``samkit auto`` with no model option uses the bundled demo model and its calibrated
    thresholds: masks come out on the bundled sample (with the official thresholds the
    demo model kept none)."""
    from importlib.resources import files

    sample = Path(str(files("samkit") / "assets" / "sample.jpg"))
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["auto", str(sample), "--out", str(out), "--points-per-side", "16", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    _, records = read_amg_json(out / "sample.json")
    assert len(records) >= 3


def test_overlays_next_to_their_image_are_not_inputs(tmp_path: Path) -> None:
    """A glob that lists X.overlay.png but not X.jpg (e.g. 'in/*.png') left the overlay
    in as an input; an overlay without its image stays an input."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_image(folder / "sample.jpg")
    make_image(folder / "sample.overlay.png")
    make_image(folder / "other.png")
    make_image(folder / "lonely.overlay.png")
    assert collect_inputs(str(folder / "*.png")) == [
        folder / "lonely.overlay.png",
        folder / "other.png",
    ]
    assert collect_inputs(str(folder)) == [
        folder / "lonely.overlay.png",
        folder / "other.png",
        folder / "sample.jpg",
    ]


def test_resume_makes_the_overlays_an_earlier_run_did_not(
    checkpoint: Path, folder: Path, tmp_path: Path
) -> None:
    """A run with --overlay after one without it makes the overlays (it skipped the
    images as done and wrote none)."""
    out = tmp_path / "out"
    assert auto(checkpoint, folder, "--out", out).exit_code == 0
    again = auto(checkpoint, folder, "--out", out, "--overlay")
    assert again.exit_code == 0, again.output
    assert "2 done, 0 skipped" in again.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json",
        "a.overlay.png",
        "b.json",
        "b.overlay.png",
    ]
