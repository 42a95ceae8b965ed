"""Export a trained run to the Hugging Face formats: a Llama checkpoint and a `tokenizer.json`.

The reference TransformerLM *is* a Llama (pre-norm RMSNorm, RoPE, SwiGLU, no biases), so the
weights map one to one, with one twist: our RoPE rotates adjacent pairs (x[2k], x[2k+1]), while
Llama's rotates halves (x[k], x[k + d/2]), both at frequency θ^(-2k/d). Reordering each head's
rows of W_q and W_k — even rows first, then odd rows — turns one into the other; q·k is unchanged
because queries and keys are permuted alike, so V and the output projection stay as they are.

| ours                        | Llama (`transformers`)                           |
| --------------------------- | ------------------------------------------------ |
| token_embeddings.weight     | model.embed_tokens.weight                        |
| layers.i.attn.{q,k}_proj    | model.layers.i.self_attn.{q,k}_proj (permuted)   |
| layers.i.attn.v_proj        | model.layers.i.self_attn.v_proj                  |
| layers.i.attn.output_proj   | model.layers.i.self_attn.o_proj                  |
| layers.i.ln1, ln2           | model.layers.i.input_layernorm, post_attention_layernorm |
| layers.i.ffn.w1, w3, w2     | model.layers.i.mlp.gate_proj, up_proj, down_proj |
| ln_final, lm_head           | model.norm, lm_head (absent when tied)           |

Ablated models Llama cannot express (post-norm or no norm, NoPE, the ungated FFNs, query/key norms,
capped logits, value residuals, residual scalars) are refused.

The tokenizer becomes a byte-level BPE in `tokenizers`' JSON format: the same vocabulary and merges
(in GPT-2's byte-to-unicode alphabet), the GPT-2 pre-tokenizer regex, no prefix space, and the
special tokens as added tokens that are matched before anything else, as our Tokenizer does.

>>> export_hf("runs/tinystories", "hf/tinystories")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

from cs336.errors import CS336Error
from cs336.model.transformer import TransformerLM
from cs336.outputs import output_dir
from cs336.runs import load_run
from cs336.tokenization import END_OF_TEXT
from cs336.tokenization.files import token_to_string


def rope_adjacent_to_half(weight: Tensor, num_heads: int) -> Tensor:
    """Reorder each head's rows from adjacent-pair RoPE to half-rotation RoPE: even rows, then odd.

    >>> rope_adjacent_to_half(torch.arange(8.0)[:, None], num_heads=2).flatten().tolist()
    [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
    """
    d_k = weight.shape[0] // num_heads
    within = torch.cat((torch.arange(0, d_k, 2), torch.arange(1, d_k, 2)))
    rows = (torch.arange(num_heads)[:, None] * d_k + within[None, :]).flatten()
    return weight[rows]


def check_llama_compatible(model: TransformerLM) -> None:
    """Refuse the ablations that a Llama checkpoint cannot express (`zero_init_output` is only an
    initialisation: its trained weights export as any others)."""
    problems = []
    if model.norm != "pre":
        problems.append(f"norm={model.norm!r} (Llama is pre-norm)")
    if model.position != "rope":
        problems.append(f"position={model.position!r} (Llama uses RoPE)")
    if model.ffn != "swiglu":
        problems.append(f"ffn={model.ffn!r} (Llama's MLP is SwiGLU)")
    if getattr(model, "qk_norm", False):
        problems.append("qk_norm=True (Llama has no query/key norm)")
    if getattr(model, "logit_softcap", None) is not None:
        problems.append(f"logit_softcap={model.logit_softcap!r} (Llama does not cap its logits)")
    if getattr(model, "value_residual", False):
        problems.append("value_residual=True (Llama's layers do not share values)")
    if getattr(model, "residual_scalars", False):
        problems.append("residual_scalars=True (Llama's residual stream has no learnable mix or gains)")
    if problems:
        raise CS336Error(f"cannot export to Llama: {'; '.join(problems)}")


def llama_config(model: TransformerLM, eos_token_id: int | None = None) -> dict:
    """The `config.json` of the equivalent `LlamaForCausalLM`."""
    check_llama_compatible(model)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": model.vocab_size,
        "hidden_size": model.d_model,
        "intermediate_size": model.d_ff,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.num_heads,
        "num_key_value_heads": model.num_heads,
        "head_dim": model.d_model // model.num_heads,
        "max_position_embeddings": model.context_length,
        "hidden_act": "silu",
        "rms_norm_eps": model.ln_final.eps,
        "rope_theta": float(model.rope_theta),
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": bool(model.tie_embeddings),
        "bos_token_id": None,
        "eos_token_id": eos_token_id,
        "torch_dtype": str(model.token_embeddings.weight.dtype).removeprefix("torch."),
    }


def llama_state_dict(model: TransformerLM) -> dict[str, Tensor]:
    """Our weights under Llama's names, Q and K permuted to half-rotation RoPE."""
    check_llama_compatible(model)
    ours = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    h = model.num_heads
    out = {"model.embed_tokens.weight": ours["token_embeddings.weight"], "model.norm.weight": ours["ln_final.weight"]}
    for i in range(model.num_layers):
        a, b = f"layers.{i}.", f"model.layers.{i}."
        out |= {
            f"{b}self_attn.q_proj.weight": rope_adjacent_to_half(ours[f"{a}attn.q_proj.weight"], h),
            f"{b}self_attn.k_proj.weight": rope_adjacent_to_half(ours[f"{a}attn.k_proj.weight"], h),
            f"{b}self_attn.v_proj.weight": ours[f"{a}attn.v_proj.weight"],
            f"{b}self_attn.o_proj.weight": ours[f"{a}attn.output_proj.weight"],
            f"{b}input_layernorm.weight": ours[f"{a}ln1.weight"],
            f"{b}post_attention_layernorm.weight": ours[f"{a}ln2.weight"],
            f"{b}mlp.gate_proj.weight": ours[f"{a}ffn.w1.weight"],
            f"{b}mlp.up_proj.weight": ours[f"{a}ffn.w3.weight"],
            f"{b}mlp.down_proj.weight": ours[f"{a}ffn.w2.weight"],
        }
    if not model.tie_embeddings:  # tied: Llama re-ties lm_head to embed_tokens on load
        out["lm_head.weight"] = ours["lm_head.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def tokenizer_json(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens=()) -> dict:
    """A `tokenizers` Tokenizer (as JSON) that encodes exactly like our byte-level BPE."""
    ids = {token: i for i, token in vocab.items()}
    added = []
    for special in special_tokens:
        key = special.encode("utf-8")
        if key not in ids:
            raise CS336Error(f"special token {special!r} is not in the vocabulary")
        added.append({
            "id": ids[key], "content": special, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True,
        })
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,  # apply merges in order, as our Tokenizer does
            "vocab": {token_to_string(token): i for i, token in sorted(vocab.items())},
            "merges": [[token_to_string(a), token_to_string(b)] for a, b in merges],
        },
    }


def export_hf(
    run: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    config: str | os.PathLike | dict | None = None,
) -> Path:
    """Write `config.json`, `model.safetensors`, `tokenizer.json` and `tokenizer_config.json` of a
    run into `out_dir`."""

    output_dir(out_dir, "export directory", create=False)  # a bad OUT fails before the model is loaded
    model, tok = load_run(run, checkpoint=checkpoint, tokenizer=tokenizer, config=config)
    return save_hf(model, out_dir, tokenizer=tok)


def save_hf(model: TransformerLM, out_dir: str | os.PathLike, *, tokenizer=None) -> Path:
    """Write a model (and optionally its Tokenizer) in Hugging Face format; return `out_dir`."""
    check_llama_compatible(model)
    try:
        from safetensors.torch import save_file  # here: the `export` extra
    except ImportError as e:
        raise CS336Error("exporting needs the safetensors package: pip install 'cs336[export]'") from e
    out = output_dir(out_dir, "export directory")
    # Every file is written into a staging folder first and moved in only when all are complete,
    # so a failed export leaves a previous export in `out` untouched and no half-written files.
    stage = out / ".export.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        eos = None
        if tokenizer is not None:
            specials = list(getattr(tokenizer, "special_tokens", None) or [])
            eos = next((i for i, t in tokenizer.vocab.items() if t == END_OF_TEXT.encode()), None)
            spec = tokenizer_json(tokenizer.vocab, tokenizer.merges, specials)
            (stage / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
            # For `transformers.AutoTokenizer`: which token ends a text, and decode without the
            # "clean-up" that would drop spaces before punctuation.
            tok_config = {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": END_OF_TEXT if eos is not None else None,
                "model_max_length": model.context_length,
                "clean_up_tokenization_spaces": False,
            }
            (stage / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n", encoding="utf-8")
        (stage / "config.json").write_text(json.dumps(llama_config(model, eos), indent=2) + "\n", encoding="utf-8")
        save_file(llama_state_dict(model), str(stage / "model.safetensors"), metadata={"format": "pt"})
        for f in sorted(stage.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out
