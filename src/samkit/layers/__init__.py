"""The single copy of the primitives shared by SAM 1, SAM 2 and SAM 3."""

from samkit.layers.attention import Attention
from samkit.layers.common import MLP, LayerNorm2d, MLPBlock
from samkit.layers.position import PositionEmbeddingRandom
from samkit.layers.two_way import TwoWayAttentionBlock, TwoWayTransformer

__all__ = [
    "MLP",
    "Attention",
    "LayerNorm2d",
    "MLPBlock",
    "PositionEmbeddingRandom",
    "TwoWayAttentionBlock",
    "TwoWayTransformer",
]
