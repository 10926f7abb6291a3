"""samkit: the Segment Anything family, official checkpoints, same outputs, faster.

Public API::

    import samkit
    samkit.list_models()
    model = samkit.load_model("sam-vit-b")            # or checkpoint="sam_vit_b_01ec64.pth"
    predictor = samkit.ImagePredictor(model)
    predictor.set_image("photo.jpg")
    result = predictor.predict(points=[[500, 375]], labels=[1])
    masks = samkit.MaskGenerator(model).generate("photo.jpg")   # segment everything
    session = samkit.VideoPredictor(sam2_model).start("frames/")  # SAM 2 video tracking

Importing samkit does no I/O and changes no global torch setting.
"""

from samkit.build import build_model, load_model
from samkit.compile import compile_model
from samkit.configs import ModelPreset, WeightSpec, get_preset, list_models
from samkit.errors import (
    CheckpointError,
    DownloadError,
    FrameOutOfRange,
    InvalidArgument,
    InvalidArgumentType,
    InvalidConfig,
    InvalidDataset,
    InvalidImage,
    InvalidMask,
    InvalidPrompt,
    InvalidVideo,
    NoImageSet,
    NoPrompts,
    OutputError,
    SamkitError,
    SessionClosed,
    TrainingDiverged,
    UnknownModel,
    UnknownObject,
)
from samkit.inference.predictor import ImagePredictor
from samkit.types import ImageEmbedding, MaskPrediction

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: MaskGenerator pulls in pycocotools and scipy
    if name == "MaskGenerator":
        from samkit.amg import MaskGenerator

        return MaskGenerator
    if name in ("VideoPredictor", "VideoSession", "FrameResult"):
        import samkit.video

        return getattr(samkit.video, name)
    raise AttributeError(f"module 'samkit' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "DownloadError",
    "FrameOutOfRange",
    "FrameResult",
    "ImageEmbedding",
    "ImagePredictor",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidConfig",
    "InvalidDataset",
    "InvalidImage",
    "InvalidMask",
    "InvalidPrompt",
    "InvalidVideo",
    "MaskGenerator",
    "MaskPrediction",
    "ModelPreset",
    "NoImageSet",
    "NoPrompts",
    "OutputError",
    "SamkitError",
    "SessionClosed",
    "TrainingDiverged",
    "UnknownModel",
    "UnknownObject",
    "VideoPredictor",
    "VideoSession",
    "WeightSpec",
    "__version__",
    "build_model",
    "compile_model",
    "get_preset",
    "list_models",
    "load_model",
]
