"""cs336: language modeling from scratch. The public API (API.md in the checkout), re-exported."""

from cs336.model import (
    Embedding,
    Linear,
    MultiHeadSelfAttention,
    RMSNorm,
    RotaryPositionalEmbedding,
    SwiGLU,
    TransformerBlock,
    TransformerLM,
    scaled_dot_product_attention,
    silu,
    softmax,
)
from cs336.tokenization import Tokenizer, train_bpe
from cs336.training import (
    AdamW,
    Muon,
    cross_entropy,
    get_batch,
    get_lr_cosine_schedule,
    gradient_clipping,
    load_checkpoint,
    save_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "train_bpe",
    "Tokenizer",
    "Linear",
    "Embedding",
    "RMSNorm",
    "SwiGLU",
    "RotaryPositionalEmbedding",
    "softmax",
    "silu",
    "scaled_dot_product_attention",
    "MultiHeadSelfAttention",
    "TransformerBlock",
    "TransformerLM",
    "cross_entropy",
    "AdamW",
    "Muon",
    "get_lr_cosine_schedule",
    "gradient_clipping",
    "get_batch",
    "save_checkpoint",
    "load_checkpoint",
]
