"""Typed exceptions raised by samkit.

Every error a user can cause (bad image, bad prompt, bad checkpoint, unknown model,
failed download) has its own class so callers can handle it, and the CLI can turn it
into one clear line instead of a traceback.
"""

from __future__ import annotations


class SamkitError(Exception):
    """Base class of every error samkit raises on purpose."""


class InvalidImage(SamkitError, ValueError):
    """The image cannot be read or has an unsupported shape or dtype."""


class InvalidPrompt(SamkitError, ValueError):
    """Points, labels, boxes or mask inputs are malformed or outside the image."""


class InvalidMask(SamkitError, ValueError):
    """A mask or RLE is malformed: wrong shape or dtype, a corrupt or truncated RLE
    string, run lengths that do not sum to ``H * W``, or a size that does not match its
    image (or the other mask it is compared with); also an empty mask where a foreground
    pixel is needed (a click or a box inside it)."""


class InvalidArgument(SamkitError, ValueError):
    """A library function or constructor got an argument value it cannot use: a setting
    out of range, an unknown option string, an array (not an image, prompt or mask) of
    the wrong shape, or arguments of inconsistent lengths."""


class InvalidArgumentType(SamkitError, TypeError):
    """A library function or constructor got an argument of the wrong type."""


class UnknownModel(SamkitError, KeyError):
    """The model name is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class CheckpointError(SamkitError, RuntimeError):
    """A checkpoint file is unreadable, truncated, or does not match the architecture."""


class DownloadError(SamkitError, RuntimeError):
    """Weights could not be downloaded or failed verification."""


class NoImageSet(SamkitError, RuntimeError):
    """A predictor was asked to predict before an image or embedding was set."""


class OutputError(SamkitError, OSError):
    """An output file cannot be written (or would overwrite an input)."""


class InvalidConfig(SamkitError, ValueError):
    """A configuration (e.g. a :class:`~samkit.train.TrainConfig` or its JSON/YAML file) is
    missing, unreadable or malformed, or has an unknown or invalid field.

    Attributes:
        field: the offending field, or ``None`` for a problem with the file as a whole.
        path: the config file, when the configuration was read from one.
    """

    def __init__(self, message: str, *, field: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.path = path


class InvalidVideo(SamkitError, ValueError):
    """A video source cannot be read: no frames, unreadable or inconsistent frames, an
    unsupported format, or a frame of a stream that is no longer available."""


class FrameOutOfRange(SamkitError, IndexError):
    """A frame index is outside the video."""


class UnknownObject(SamkitError, KeyError):
    """The object id is not tracked in this video session."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NoPrompts(SamkitError, RuntimeError):
    """Propagation was asked for before every object had a prompt on an untracked frame."""


class SessionClosed(SamkitError, RuntimeError):
    """A closed video session was used."""


class TrainingDiverged(SamkitError, FloatingPointError):
    """The training loss became NaN or infinite (usually a learning rate far too high).
    Raised before that step's update, so the weights are those of the step before."""


class InvalidDataset(SamkitError, ValueError):
    """A dataset cannot be used: annotations that are malformed (not an SA-1B / COCO
    document, an annotation without a usable segmentation, a corrupt RLE, masks that do
    not fit the image), a malformed COCO results (detections) file, or no mask at all to
    train on."""
