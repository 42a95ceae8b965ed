"""The Transformer LM and its layers."""

from cs336.model.config import ModelConfig
from cs336.model.functional import relu_squared, scaled_dot_product_attention, silu, softmax
from cs336.model.layers import (
    Embedding,
    Linear,
    MultiHeadSelfAttention,
    ReLU2FFN,
    RMSNorm,
    RotaryPositionalEmbedding,
    SiLUFFN,
    SwiGLU,
)
from cs336.model.transformer import TransformerBlock, TransformerLM
