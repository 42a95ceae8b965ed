"""The public API is a promise: every name of the API document is importable from `cs336` with
exactly the documented positional parameters (names, order, defaults), and the modules' state-dict
keys are the documented ones, so outside code and checkpoints keep working.

Extra keyword-only options are allowed; `**options` marks where the document allows them.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import cs336

_ = inspect.Parameter.empty
# name -> the positional parameters (name, default) the API document gives, in order
SIGNATURES = {
    "train_bpe": [("input_path", _), ("vocab_size", _), ("special_tokens", _)],
    "Tokenizer": [("vocab", _), ("merges", _), ("special_tokens", None)],
    "Tokenizer.from_files": [("vocab_filepath", _), ("merges_filepath", _), ("special_tokens", None)],
    "Tokenizer.save": [("vocab_filepath", _), ("merges_filepath", _)],
    "Tokenizer.encode": [("text", _)],
    "Tokenizer.encode_iterable": [("iterable", _)],
    "Tokenizer.decode": [("ids", _)],
    "Linear": [("in_features", _), ("out_features", _), ("device", None), ("dtype", None)],
    "Embedding": [("num_embeddings", _), ("embedding_dim", _), ("device", None), ("dtype", None)],
    "RMSNorm": [("d_model", _), ("eps", 1e-5), ("device", None), ("dtype", None)],
    "SwiGLU": [("d_model", _), ("d_ff", _), ("device", None), ("dtype", None)],
    "RotaryPositionalEmbedding": [("theta", _), ("d_k", _), ("max_seq_len", _), ("device", None)],
    # a documented extension: positions default to 0..seq-1
    "RotaryPositionalEmbedding.forward": [("x", _), ("token_positions", None)],
    "softmax": [("x", _), ("dim", _)],
    "silu": [("x", _)],
    "scaled_dot_product_attention": [("Q", _), ("K", _), ("V", _), ("mask", None)],
    "MultiHeadSelfAttention": [
        ("d_model", _), ("num_heads", _), ("max_seq_len", None), ("theta", None), ("device", None), ("dtype", None),
    ],
    "MultiHeadSelfAttention.forward": [("x", _), ("token_positions", None)],
    "TransformerBlock": [
        ("d_model", _), ("num_heads", _), ("d_ff", _), ("max_seq_len", _), ("theta", _), ("device", None), ("dtype", None),
    ],
    "TransformerLM": [
        ("vocab_size", _), ("context_length", _), ("d_model", _), ("num_layers", _), ("num_heads", _), ("d_ff", _),
        ("rope_theta", _), ("device", None), ("dtype", None),
    ],
    "TransformerLM.forward": [("token_ids", _)],
    "cross_entropy": [("logits", _), ("targets", _)],
    "AdamW": [("params", _), ("lr", 1e-3), ("betas", (0.9, 0.999)), ("eps", 1e-8), ("weight_decay", 0.01)],
    "Muon": [
        ("params", _), ("lr", 1e-3), ("weight_decay", 0.1), ("momentum", 0.95), ("nesterov", True),
        ("ns_coefficients", (3.4445, -4.775, 2.0315)), ("eps", 1e-7), ("ns_steps", 5), ("adjust_lr_fn", None),
    ],
    "get_lr_cosine_schedule": [
        ("it", _), ("max_learning_rate", _), ("min_learning_rate", _), ("warmup_iters", _), ("cosine_cycle_iters", _),
    ],
    "gradient_clipping": [("parameters", _), ("max_l2_norm", _)],
    "get_batch": [("dataset", _), ("batch_size", _), ("context_length", _), ("device", _)],
    "save_checkpoint": [("model", _), ("optimizer", _), ("iteration", _), ("out", _)],
    "load_checkpoint": [("src", _), ("model", _), ("optimizer", _)],
}
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def resolve(dotted: str):
    obj = cs336
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_api_name_is_exported_at_the_top_level():
    top = {name.split(".")[0] for name in SIGNATURES}
    assert top <= set(cs336.__all__)
    assert all(hasattr(cs336, name) for name in top)


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_positional_signature_matches_the_api(name):
    obj = resolve(name)
    params = list(inspect.signature(obj).parameters.values())
    if "." in name and inspect.isfunction(obj):  # an instance method, looked up on the class
        params = params[1:]
    positional = [(p.name, p.default) for p in params if p.kind in POSITIONAL]
    assert positional == SIGNATURES[name]
    # anything beyond the documented parameters must be keyword-only or **options
    extra = [p for p in params if p.kind not in POSITIONAL]
    assert all(p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD) for p in extra), extra


def test_from_files_is_a_classmethod():
    assert isinstance(inspect.getattr_static(cs336.Tokenizer, "from_files"), classmethod)


def test_adamw_is_a_torch_optimizer():
    assert issubclass(cs336.AdamW, torch.optim.Optimizer)


def test_muon_is_a_torch_optimizer():
    assert issubclass(cs336.Muon, torch.optim.Optimizer)


D, H, F, V, CTX = 16, 2, 32, 50, 8
BLOCK_KEYS = {
    "attn.q_proj.weight": (D, D), "attn.k_proj.weight": (D, D), "attn.v_proj.weight": (D, D),
    "attn.output_proj.weight": (D, D), "ln1.weight": (D,), "ffn.w1.weight": (F, D), "ffn.w2.weight": (D, F),
    "ffn.w3.weight": (F, D), "ln2.weight": (D,),
}


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_swiglu_state_dict_keys():
    assert shapes(cs336.SwiGLU(D, F)) == {"w1.weight": (F, D), "w2.weight": (D, F), "w3.weight": (F, D)}


def test_attention_state_dict_keys_with_and_without_rope():
    expected = {f"{p}.weight": (D, D) for p in ("q_proj", "k_proj", "v_proj", "output_proj")}
    assert shapes(cs336.MultiHeadSelfAttention(D, H)) == expected
    assert shapes(cs336.MultiHeadSelfAttention(D, H, CTX, 10000.0)) == expected  # RoPE adds no parameters


def test_block_state_dict_keys():
    assert shapes(cs336.TransformerBlock(D, H, F, CTX, 10000.0)) == BLOCK_KEYS


def test_transformer_lm_state_dict_keys():
    model = cs336.TransformerLM(V, CTX, D, 2, H, F, 10000.0)
    expected = {"token_embeddings.weight": (V, D), "ln_final.weight": (D,), "lm_head.weight": (V, D)}
    expected |= {f"layers.{i}.{k}": s for i in range(2) for k, s in BLOCK_KEYS.items()}
    assert shapes(model) == expected
    assert model(torch.zeros(1, CTX, dtype=torch.long)).shape == (1, CTX, V)
