"""SAM 2 memory modules (video): the memory encoder and the memory attention."""

from samkit.modeling.memory.attention import (
    MemoryAttention,
    MemoryAttentionLayer,
    build_memory_attention,
)
from samkit.modeling.memory.encoder import (
    CXBlock,
    Fuser,
    MaskDownSampler,
    MemoryEncoder,
    build_memory_encoder,
)

__all__ = [
    "CXBlock",
    "Fuser",
    "MaskDownSampler",
    "MemoryAttention",
    "MemoryAttentionLayer",
    "MemoryEncoder",
    "build_memory_attention",
    "build_memory_encoder",
]
