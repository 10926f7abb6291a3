"""Inputs and output layout of ``samkit auto``: the images to process, where each one's
outputs go, and the checks that refuse unsafe outputs before any model is loaded."""

from __future__ import annotations

import contextlib
import enum
import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from samkit.cli.common import CliError
from samkit.data.amg_json import AMG_IMAGE_KEYS, COCO_DESCRIPTION
from samkit.data.sa1b import IMAGE_EXTENSIONS
from samkit.fileio import nearest_existing, read_head

__all__ = [
    "COCO_FILE",
    "IMAGE_SUFFIXES",
    "METADATA_FILE",
    "OVERLAY_SUFFIX",
    "OutputFormat",
    "collect_inputs",
]

#: Suffixes (any case) of the files taken from a folder or a glob pattern: the ones an
#: SA-1B dataset pairs with its JSONs, so an ``auto`` output can be trained on.
IMAGE_SUFFIXES: tuple[str, ...] = IMAGE_EXTENSIONS
#: ``<stem>`` + this is the overlay of an image.
OVERLAY_SUFFIX = ".overlay.png"
#: Name of the COCO file of ``--format coco``, in ``--out``.
COCO_FILE = "coco_annotations.json"
#: Per-image metadata of ``--format png`` (also the marker that the folder is complete).
METADATA_FILE = "metadata.csv"


class OutputFormat(str, enum.Enum):
    """What ``samkit auto`` writes per image."""

    sa1b = "sa1b"
    coco = "coco"
    png = "png"


# ----------------------------------------------------------------------------- inputs
def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _drop_overlays(paths: list[Path]) -> list[Path]:
    """Leave out ``X.overlay.png`` when an image ``X.*`` is listed too or lies next to
    it: it is that image's overlay (from an earlier run writing into the input folder),
    not an input (a glob such as ``'in/*.png'`` lists it without ``X.jpg``)."""
    stems = {(p.parent, p.stem) for p in paths}

    def is_overlay(p: Path) -> bool:
        if not p.name.endswith(OVERLAY_SUFFIX):
            return False
        stem = p.name[: -len(OVERLAY_SUFFIX)]
        if (p.parent, stem) in stems:
            return True
        return any(
            _is_image_name(q) and q.is_file()
            for q in p.parent.glob(glob.escape(stem) + ".*")
            if q.stem == stem
        )

    return [p for p in paths if not is_overlay(p)]


def collect_inputs(text: str) -> list[Path]:
    """INPUT -> the image files to process, sorted.

    A file is taken as is (whatever its suffix); a folder gives its files with an image
    suffix (:data:`IMAGE_SUFFIXES`, any case; not recursive); otherwise ``text`` is a glob
    pattern (``**`` recurses) and gives the matching files with an image suffix. Files
    named ``X.overlay.png`` next to an image ``X.*`` are overlays and are left out.

    Raises:
        CliError: nothing exists at ``text``, or the folder/pattern holds no image.
    """
    if not text.strip():
        raise CliError("INPUT is empty: give an image, a folder or a quoted glob pattern")
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and _is_image_name(p))
        found = _drop_overlays(found)
        if not found:
            raise CliError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return found
    if any(c in text for c in "*?["):
        matches = (Path(m) for m in glob.glob(text, recursive=True))
        found = _drop_overlays(sorted(p for p in matches if p.is_file() and _is_image_name(p)))
        if not found:
            raise CliError(f"no image files match {text!r}")
        return found
    raise CliError(f"input not found: {text}")


def _check_stems(paths: Sequence[Path]) -> None:
    """Two inputs whose stems differ only in case would write the same outputs."""
    seen: dict[str, Path] = {}
    for path in paths:
        key = path.stem.casefold()
        if key in seen:
            raise CliError(
                f"inputs {seen[key]} and {path} have the same name stem {path.stem!r}: "
                "their outputs would collide; rename one or run them separately"
            )
        seen[key] = path


# ----------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class _Job:
    """One image and where its outputs go."""

    image: Path
    target: Path  # <stem>.json (sa1b/coco) or the <stem>/ folder (png)
    main: Path  # the file whose existence means "done"
    overlay: Path | None


def _plan(
    images: Sequence[Path], out: Path, fmt: OutputFormat, overlay: bool
) -> tuple[list[_Job], Path | None]:
    jobs = []
    for image in images:
        if fmt is OutputFormat.png:
            target = out / image.stem
            main = target / METADATA_FILE
        else:
            target = main = out / f"{image.stem}.json"
        jobs.append(
            _Job(image, target, main, out / f"{image.stem}{OVERLAY_SUFFIX}" if overlay else None)
        )
    coco = out / COCO_FILE if fmt is OutputFormat.coco else None
    return jobs, coco


def _file_key(path: Path) -> str:
    return os.path.normcase(str(path.resolve()))


def _check_plan(jobs: Sequence[_Job], coco: Path | None, out: Path, overwrite: bool) -> None:
    """Refuse (one line) outputs that would overwrite an input, collide, or have the wrong
    kind (a folder where a file goes, or the reverse)."""
    inputs: dict[str, Path] = {}
    inodes: dict[tuple[int, int], Path] = {}
    for job in jobs:
        inputs[_file_key(job.image)] = job.image
        with contextlib.suppress(OSError):
            st = job.image.stat()
            inodes[(st.st_dev, st.st_ino)] = job.image

    def clobbered(path: Path) -> Path | None:
        hit = inputs.get(_file_key(path))
        if hit is None and path.exists():
            with contextlib.suppress(OSError):
                st = path.stat()
                hit = inodes.get((st.st_dev, st.st_ino))
        return hit

    files: list[Path] = [coco] if coco is not None else []
    folders: list[Path] = []
    for job in jobs:
        if job.overlay is not None:
            files.append(job.overlay)
        (folders if job.target != job.main else files).append(job.target)
    seen: dict[str, Path] = {}
    for path in [*files, *folders]:
        key = os.path.normcase(str(path)).casefold()
        if key in seen:
            raise CliError(f"two outputs would be written to {path}; rename the inputs")
        seen[key] = path
    for path in files:
        source = clobbered(path)
        if source is not None:
            raise CliError(
                f"--out {out}: writing {path} would overwrite the input {source}; "
                "choose another --out folder"
            )
        if path.is_dir():
            raise CliError(f"cannot write {path}: it is a folder")
    folder_keys = {_file_key(path): path for path in folders}
    for job in jobs:
        for parent in job.image.resolve().parents:
            target = folder_keys.get(os.path.normcase(str(parent)))
            if target is not None:
                raise CliError(
                    f"--out {out}: replacing {target} would delete the input {job.image}; "
                    "choose another --out folder"
                )
    for path in folders:
        if path.exists() and not path.is_dir():
            raise CliError(f"cannot write the masks folder {path}: a file of that name exists")
        # never replaced, not even with --overwrite: it may hold the user's files
        if path.is_dir() and not (path / METADATA_FILE).is_file():
            raise CliError(
                f"{path} exists but is not a samkit output (no {METADATA_FILE}); "
                "move it away or choose another --out folder"
            )
    for job in jobs:  # sa1b/coco: never skip as done, nor overwrite, a JSON of the user's
        if job.target == job.main and job.target.is_file() and not _is_amg_json(job):
            raise CliError(
                f"{job.target} exists but is not a samkit output (not the SA-1B JSON samkit "
                f"auto writes for {job.image.name}); move it away or choose another --out folder"
            )
    if coco is not None and coco.is_file() and not _head(coco).startswith(_COCO_HEAD):
        raise CliError(
            f"{coco} exists but is not a samkit output (not a COCO file samkit auto wrote); "
            "move it away or choose another --out folder"
        )


#: How a COCO file of :func:`samkit.data.amg_json.export_coco` begins.
_COCO_HEAD = json.dumps({"info": {"description": COCO_DESCRIPTION}})[:-1]


def _head(path: Path) -> str:
    """The first 8 KiB of ``path`` (samkit's JSONs are ASCII), or ``""`` if unreadable:
    enough for the ``image`` record, cheap for a resume over many files."""
    return read_head(path, 1 << 13)


def _is_amg_json(job: _Job) -> bool:
    """Whether ``job.target`` begins as the JSON that ``samkit auto`` writes for
    ``job.image`` (compact, ``image`` first: keys in :data:`~samkit.data.amg_json.AMG_IMAGE_KEYS` order,
    ``image_id`` the stem, ``file_name`` ending in the image's name), so that it may be
    skipped as done or replaced. Only the head is read: the masks can be large."""
    head, start = _head(job.target), len('{"image": ')
    if not head.startswith('{"image": {'):
        return False
    try:
        info, end = json.JSONDecoder().raw_decode(head, start)
    except ValueError:
        return False
    return (
        head.startswith(', "annotations": [', end)
        and tuple(info) == AMG_IMAGE_KEYS
        and info["image_id"] == job.image.stem
        and isinstance(info["file_name"], str)
        # the file name is written from the resolved path (a symlinked input's target)
        and info["file_name"].rsplit("/", 1)[-1] in _names_of(job.image)
    )


def _names_of(image: Path) -> set[str]:
    """The image's file name and, for a symbolic link, its target's."""
    try:
        return {image.name, image.resolve().name}
    except (OSError, RuntimeError):  # a link loop: no image to resolve anyway
        return {image.name}


def _prepare_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file or cannot be written; create nothing yet (the
    folder is made by :func:`_create_out` once the model has loaded)."""
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; it must be a folder")
    folder = nearest_existing(out)  # out itself or the one to create it in
    if folder != out and not folder.is_dir():
        raise CliError(f"cannot create --out folder {out}: {folder} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        if folder == out:
            raise CliError(f"--out folder {out} is not writable")
        raise CliError(f"cannot create --out folder {out}: {folder} is not writable")


def _create_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create --out folder {out}: {exc.strerror or exc}") from None
