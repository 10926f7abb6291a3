"""Writing the outputs of ``samkit auto``: per-image masks, overlay, ``metadata.csv`` and
SA-1B JSON, each image's main output last (it marks the image done)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samkit.cli.auto_plan import METADATA_FILE, OutputFormat, _Job
from samkit.cli.output import mask_png, png_bytes
from samkit.errors import OutputError
from samkit.fileio import atomic_write_bytes, chmod_as_created
from samkit.viz import MaskOverlay, mask_colour

__all__ = ["METADATA_HEADER", "metadata_csv"]

#: Columns of ``metadata.csv``, as written by the official ``scripts/amg.py``.
METADATA_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)


# ----------------------------------------------------------------------------- metadata
def metadata_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """``metadata.csv`` of the official ``amg.py`` (header + one row per record, ``id`` =
    record index, values formatted with ``str``), newline-terminated."""
    rows = [METADATA_HEADER]
    for i, r in enumerate(records):
        values = [
            i,
            r["area"],
            *r["bbox"],
            *r["point_coords"][0],
            r["predicted_iou"],
            r["stability_score"],
            *r["crop_box"],
        ]
        rows.append(",".join(str(v) for v in values))
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------- writing
def _replace_folder(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an existing one."""
    chmod_as_created(tmp)
    aside: Path | None = None
    try:
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.rename(target, aside / "old")
        os.rename(tmp, target)
    except OSError as exc:
        if aside is not None and (aside / "old").exists() and not target.exists():
            os.rename(aside / "old", target)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def _write_outputs(
    job: _Job, fmt: OutputFormat, out: Path, rgb: np.ndarray, records: Sequence[dict[str, Any]]
) -> None:
    """Overlay and PNG masks first, the main output last (it marks the image done)."""
    from samkit.data.amg_json import write_amg_json
    from samkit.masks import rle_decode

    canvas = MaskOverlay(rgb) if job.overlay is not None else None
    tmp: Path | None = None
    try:
        if fmt is OutputFormat.png:
            try:
                tmp = Path(tempfile.mkdtemp(prefix=f".{job.target.name}.", suffix=".tmp", dir=out))
            except OSError as exc:
                raise OutputError(f"cannot write {job.target}: {exc.strerror or exc}") from None
        if tmp is not None or canvas is not None:
            # Largest first, so that smaller masks stay visible on the overlay.
            for i in sorted(range(len(records)), key=lambda k: -records[k]["area"]):
                mask = rle_decode(records[i]["segmentation"])
                if tmp is not None:
                    atomic_write_bytes(tmp / f"{i}.png", mask_png(mask))
                if canvas is not None:
                    canvas.add(mask, mask_colour(i))
        if canvas is not None and job.overlay is not None:
            atomic_write_bytes(job.overlay, png_bytes(canvas.render()))
        if tmp is not None:
            atomic_write_bytes(tmp / METADATA_FILE, metadata_csv(records).encode("utf-8"))
            _replace_folder(tmp, job.target)
            tmp = None
        else:
            try:
                file_name = os.path.relpath(job.image.resolve(), out.resolve())
            except ValueError:  # another drive (Windows)
                file_name = str(job.image.resolve())
            info = {
                "image_id": job.image.stem,
                "file_name": Path(file_name).as_posix(),
                "width": int(rgb.shape[1]),
                "height": int(rgb.shape[0]),
            }
            write_amg_json(job.target, records, info)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
