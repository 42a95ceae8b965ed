"""Specifications of the Transformer LM and its layers, each checked against an outside reference:
PyTorch's built-ins computing the same thing, a complex-number RoPE, and Hugging Face's Llama."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cs336 import (
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
from cs336.errors import CS336Error
from cs336.model import SiLUFFN
from cs336.training.loss import next_token_loss

# Std of N(0, σ²) truncated at ±3σ, as a fraction of σ: sqrt(1 - 2·3·φ(3) / (Φ(3) - Φ(-3))).
_PHI3 = math.exp(-4.5) / math.sqrt(2 * math.pi)
TRUNC3_STD = math.sqrt(1 - 6 * _PHI3 / math.erf(3 / math.sqrt(2)))


def tiny_lm(**kw) -> TransformerLM:
    args = dict(vocab_size=53, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=48, rope_theta=10000.0)
    args.update(kw)
    torch.manual_seed(0)
    return TransformerLM(**args)


# ------------------------------------------------------------------------------------------------
# Layers against the PyTorch built-in computing the same thing


@pytest.mark.parametrize("fused", [False, True])
def test_linear_equals_F_linear_with_the_same_weight(fused):
    lin = Linear(7, 5, fused=fused)
    x = torch.randn(2, 3, 4, 7)
    torch.testing.assert_close(lin(x), F.linear(x, lin.weight))
    assert lin.weight.shape == (5, 7) and list(lin.state_dict()) == ["weight"]


def test_linear_init_is_truncated_normal_with_variance_2_over_fan_sum():
    torch.manual_seed(0)
    lin = Linear(300, 500)
    sigma = math.sqrt(2 / 800)
    w = lin.weight.detach()
    assert w.abs().max() <= 3 * sigma + 1e-7  # cut at ±3σ ...
    assert w.abs().max() > 2.9 * sigma  # ... and not narrower
    assert abs(w.mean().item()) < 0.02 * sigma
    assert w.std().item() == pytest.approx(TRUNC3_STD * sigma, rel=0.01)


@pytest.mark.parametrize("fused", [False, True])
def test_embedding_equals_F_embedding(fused):
    emb = Embedding(11, 6, fused=fused)
    ids = torch.tensor([[0, 10, 3], [3, 3, 7]])
    torch.testing.assert_close(emb(ids), F.embedding(ids, emb.weight))
    assert emb.weight.shape == (11, 6)


def test_embedding_init_is_truncated_standard_normal():
    torch.manual_seed(0)
    w = Embedding(1000, 200).weight.detach()
    assert w.abs().max() <= 3.0 and w.abs().max() > 2.9
    assert w.std().item() == pytest.approx(TRUNC3_STD, rel=0.01)
    assert abs(w.mean().item()) < 0.01


@pytest.mark.parametrize("fused", [False, True])
def test_rmsnorm_equals_F_rms_norm(fused):
    norm = RMSNorm(16, eps=1e-5, fused=fused)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(2, 3, 16) * 50
    torch.testing.assert_close(norm(x), F.rms_norm(x, (16,), norm.weight, eps=1e-5))


@pytest.mark.parametrize("fused", [False, True])
def test_rmsnorm_computes_in_float32_and_returns_the_input_dtype(fused):
    norm = RMSNorm(64, fused=fused).to(torch.bfloat16)
    x = (torch.randn(4, 64) * 300).to(torch.bfloat16)  # squares overflow bf16's precision, not its range
    out = norm(x)
    assert out.dtype == torch.bfloat16
    expected = F.rms_norm(x.float(), (64,), norm.weight.float(), eps=1e-5).to(torch.bfloat16)
    torch.testing.assert_close(out, expected, atol=0, rtol=0 if fused else 2**-7)  # at most one bf16 step apart


def test_silu_equals_F_silu():
    x = torch.linspace(-30, 30, 101)
    torch.testing.assert_close(silu(x), F.silu(x))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_equals_torch_softmax_even_for_huge_inputs(dim):
    x = torch.randn(3, 4, 5) * 10
    x[0, 0, 0], x[1, 2, 3], x[2, 3, 4] = 1e4, -1e4, 3e38
    out = softmax(x, dim)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.softmax(x, dim))


def test_swiglu_is_w2_of_silu_w1_times_w3():
    ffn = SwiGLU(8, 12)
    x = torch.randn(3, 5, 8)
    expected = F.linear(F.silu(F.linear(x, ffn.w1.weight)) * F.linear(x, ffn.w3.weight), ffn.w2.weight)
    torch.testing.assert_close(ffn(x), expected)
    assert {k: v.shape for k, v in ffn.state_dict().items()} == {
        "w1.weight": (12, 8), "w2.weight": (8, 12), "w3.weight": (12, 8)
    }


def test_silu_ffn_is_w2_of_silu_w1():
    ffn = SiLUFFN(8, 32)
    x = torch.randn(3, 8)
    torch.testing.assert_close(ffn(x), F.linear(F.silu(F.linear(x, ffn.w1.weight)), ffn.w2.weight))


@pytest.mark.parametrize("batch", [(), (3,), (2, 3, 2)])
def test_attention_equals_F_sdpa_with_a_boolean_mask_over_any_batch_dims(batch):
    torch.manual_seed(0)
    Q, K, V = torch.randn(*batch, 5, 8), torch.randn(*batch, 7, 8), torch.randn(*batch, 7, 6)
    mask = torch.rand(*batch, 5, 7) > 0.5
    mask[..., 0] = True  # every query sees something
    torch.testing.assert_close(scaled_dot_product_attention(Q, K, V, mask), F.scaled_dot_product_attention(Q, K, V, attn_mask=mask))
    torch.testing.assert_close(scaled_dot_product_attention(Q, K, V), F.scaled_dot_product_attention(Q, K, V))


def test_attention_mask_broadcasts_over_batch_dims():
    Q, K, V = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    torch.testing.assert_close(scaled_dot_product_attention(Q, K, V, causal), F.scaled_dot_product_attention(Q, K, V, is_causal=True))


# ------------------------------------------------------------------------------------------------
# RoPE against an independent complex-number formulation


def rope_complex(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Pair (x[2k], x[2k+1]) is the complex number x[2k] + i·x[2k+1]; rotating it by angle a is
    multiplying by e^{ia}."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.to(torch.float64)[..., None] * freqs
    z = torch.view_as_complex(x.to(torch.float64).reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).flatten(-2).to(x.dtype)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("theta", [10000.0, 500.0])
def test_rope_equals_complex_rotation_of_adjacent_pairs(theta, fused):
    torch.manual_seed(0)
    rope = RotaryPositionalEmbedding(theta, d_k=16, max_seq_len=64, fused=fused)
    x = torch.randn(2, 3, 9, 16)
    positions = torch.randint(0, 64, (2, 3, 9))
    torch.testing.assert_close(rope(x, positions), rope_complex(x, positions, theta))


@pytest.mark.parametrize("fused", [False, True])
def test_rope_positions_broadcast_over_batch_dims_and_default_to_arange(fused):
    rope = RotaryPositionalEmbedding(10000.0, d_k=8, max_seq_len=32, fused=fused)
    x = torch.randn(2, 5, 7, 8)
    positions = torch.arange(3, 10)
    torch.testing.assert_close(rope(x, positions), rope_complex(x, positions, 10000.0))
    torch.testing.assert_close(rope(x, positions.expand(2, 5, 7)), rope(x, positions))
    torch.testing.assert_close(rope(x), rope(x, torch.arange(7)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rope_equals_the_reference_in_value_and_gradient_on_strided_heads(dtype):
    """The fused RoPE (complex multiply) on the layout attention gives it: heads split from a
    projection and transposed, so not contiguous; bf16 computed in float32 and cast back."""
    torch.manual_seed(0)
    plain, fused = (RotaryPositionalEmbedding(10000.0, 16, 32, fused=f) for f in (False, True))
    base = torch.randn(2, 9, 4 * 16).to(dtype)
    grads, outs = [], []
    for rope in (plain, fused):
        x = base.clone().requires_grad_()
        heads = x.unflatten(-1, (4, 16)).transpose(-3, -2)  # (batch, heads, seq, d_k), strided
        assert not heads.is_contiguous()
        y = rope(heads, torch.arange(5, 14))
        (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y)
        grads.append(x.grad)
    assert outs[1].dtype == dtype
    tol = dict(rtol=0, atol=1e-6) if dtype == torch.float32 else dict(rtol=0, atol=1e-2)
    torch.testing.assert_close(outs[1], outs[0], **tol)
    torch.testing.assert_close(grads[1], grads[0], **tol)


def test_rope_has_no_state_dict_entries_and_needs_an_even_dim():
    assert RotaryPositionalEmbedding(10000.0, 8, 16).state_dict() == {}
    with pytest.raises(CS336Error, match="even"):
        RotaryPositionalEmbedding(10000.0, 7, 16)


def test_rope_makes_query_key_scores_depend_only_on_relative_position():
    rope = RotaryPositionalEmbedding(10000.0, d_k=8, max_seq_len=64)
    q, k = torch.randn(8), torch.randn(8)
    score = lambda i, j: rope(q[None], torch.tensor([i])) @ rope(k[None], torch.tensor([j])).T  # noqa: E731
    torch.testing.assert_close(score(5, 2), score(40, 37))
    assert not torch.allclose(score(5, 2), score(5, 3))


# ------------------------------------------------------------------------------------------------
# Attention and the block


def mhsa_by_hand(mhsa: MultiHeadSelfAttention, x: torch.Tensor, positions, theta) -> torch.Tensor:
    """Per-head loop with F.sdpa and the complex RoPE: an independent route to the same numbers."""
    heads = []
    d_k = mhsa.d_k
    for h in range(mhsa.num_heads):
        rows = slice(h * d_k, (h + 1) * d_k)
        q, k, v = (F.linear(x, p.weight[rows]) for p in (mhsa.q_proj, mhsa.k_proj, mhsa.v_proj))
        if theta is not None:
            q, k = rope_complex(q, positions, theta), rope_complex(k, positions, theta)
        heads.append(F.scaled_dot_product_attention(q, k, v, is_causal=True))
    return F.linear(torch.cat(heads, dim=-1), mhsa.output_proj.weight)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("theta", [None, 10000.0])
def test_causal_mhsa_equals_per_head_reference(fused, theta):
    torch.manual_seed(0)
    mhsa = MultiHeadSelfAttention(24, 3, max_seq_len=16 if theta else None, theta=theta, fused=fused)
    x = torch.randn(2, 9, 24)
    torch.testing.assert_close(mhsa(x), mhsa_by_hand(mhsa, x, torch.arange(9), theta))
    positions = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10, 11], [0, 2, 4, 6, 8, 10, 12, 14, 15]])
    torch.testing.assert_close(mhsa(x, positions), mhsa_by_hand(mhsa, x, positions, theta))
    assert sorted(mhsa.state_dict()) == ["k_proj.weight", "output_proj.weight", "q_proj.weight", "v_proj.weight"]


def test_mhsa_is_causal():
    mhsa = MultiHeadSelfAttention(16, 2, max_seq_len=8, theta=10000.0)
    x = torch.randn(1, 8, 16)
    y = x.clone()
    y[:, 5:] = torch.randn(1, 3, 16)  # change the future only
    torch.testing.assert_close(mhsa(x)[:, :5], mhsa(y)[:, :5])
    assert not torch.allclose(mhsa(x)[:, 5:], mhsa(y)[:, 5:])


def test_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, 24, max_seq_len=8, theta=10000.0)
    x = torch.randn(2, 8, 16)
    y = x + block.attn(block.ln1(x))
    torch.testing.assert_close(block(x), y + block.ffn(block.ln2(y)))
    assert sorted(block.state_dict()) == sorted(
        ["attn.q_proj.weight", "attn.k_proj.weight", "attn.v_proj.weight", "attn.output_proj.weight",
         "ln1.weight", "ffn.w1.weight", "ffn.w2.weight", "ffn.w3.weight", "ln2.weight"]
    )


# ------------------------------------------------------------------------------------------------
# The whole LM against Hugging Face's Llama with the same weights


def llama_from(lm: TransformerLM):
    from transformers import LlamaConfig, LlamaForCausalLM

    d, h = lm.d_model, lm.num_heads
    d_k = d // h
    config = LlamaConfig(
        vocab_size=lm.vocab_size, hidden_size=d, intermediate_size=lm.d_ff, num_hidden_layers=lm.num_layers,
        num_attention_heads=h, num_key_value_heads=h, hidden_act="silu", max_position_embeddings=lm.context_length,
        rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": lm.rope_theta},
        attention_bias=False, mlp_bias=False, tie_word_embeddings=False, attn_implementation="eager",
    )
    llama = LlamaForCausalLM(config).eval()
    # Llama rotates (x[i], x[i + d_k/2]); we rotate (x[2i], x[2i+1]) with the same frequency i. So
    # our row 2i of each head becomes its row i and row 2i+1 its row i + d_k/2.
    perm = torch.cat([torch.arange(0, d_k, 2), torch.arange(1, d_k, 2)])
    halves = lambda w: w.view(h, d_k, d)[:, perm].reshape(d, d)  # noqa: E731
    ours = lm.state_dict()
    sd = {"model.embed_tokens.weight": ours["token_embeddings.weight"], "model.norm.weight": ours["ln_final.weight"],
          "lm_head.weight": ours["lm_head.weight"]}
    for i in range(lm.num_layers):
        o, t = f"layers.{i}.", f"model.layers.{i}."
        sd |= {
            t + "self_attn.q_proj.weight": halves(ours[o + "attn.q_proj.weight"]),
            t + "self_attn.k_proj.weight": halves(ours[o + "attn.k_proj.weight"]),
            t + "self_attn.v_proj.weight": ours[o + "attn.v_proj.weight"],
            t + "self_attn.o_proj.weight": ours[o + "attn.output_proj.weight"],
            t + "mlp.gate_proj.weight": ours[o + "ffn.w1.weight"],
            t + "mlp.up_proj.weight": ours[o + "ffn.w3.weight"],
            t + "mlp.down_proj.weight": ours[o + "ffn.w2.weight"],
            t + "input_layernorm.weight": ours[o + "ln1.weight"],
            t + "post_attention_layernorm.weight": ours[o + "ln2.weight"],
        }
    llama.load_state_dict(sd, strict=True)
    return llama


@pytest.mark.parametrize(
    "shape, batch, seq",
    [
        (dict(), 2, 16),
        (dict(d_model=48, num_heads=3, num_layers=3, d_ff=80, rope_theta=500.0, vocab_size=37), 3, 7),
        (dict(d_model=16, num_heads=1, num_layers=1, d_ff=40), 1, 1),
        (dict(d_model=64, num_heads=8, num_layers=1, d_ff=64, context_length=32), 1, 32),
    ],
)
@pytest.mark.parametrize("fused", [False, True])
def test_lm_logits_equal_hugging_face_llama_with_the_same_weights(shape, batch, seq, fused):
    lm = tiny_lm(fused=fused, **shape)
    with torch.no_grad():  # non-trivial norm gains, so a swapped norm would show
        for name, p in lm.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_final.weight")):
                p.copy_(1 + 0.3 * torch.randn_like(p))
    llama = llama_from(lm)
    ids = torch.randint(0, lm.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(lm(ids), llama(input_ids=ids).logits, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# The LM's own contract: keys, ablations, fused path, gradients, dtypes, positions


def test_lm_state_dict_keys_and_shapes():
    lm = tiny_lm(num_layers=1)
    shapes = {k: tuple(v.shape) for k, v in lm.state_dict().items()}
    assert shapes == {
        "token_embeddings.weight": (53, 32), "lm_head.weight": (53, 32), "ln_final.weight": (32,),
        "layers.0.attn.q_proj.weight": (32, 32), "layers.0.attn.k_proj.weight": (32, 32),
        "layers.0.attn.v_proj.weight": (32, 32), "layers.0.attn.output_proj.weight": (32, 32),
        "layers.0.ln1.weight": (32,), "layers.0.ln2.weight": (32,),
        "layers.0.ffn.w1.weight": (48, 32), "layers.0.ffn.w2.weight": (32, 48), "layers.0.ffn.w3.weight": (48, 32),
    }


ABLATIONS = [
    dict(),
    dict(norm="post"),
    dict(norm="none"),
    dict(position="nope"),
    dict(ffn="silu"),
    dict(tie_embeddings=True),
]


def test_ablations_have_the_expected_parameters():
    V, d, L, d_ff = 53, 32, 2, 48
    ref = tiny_lm()
    n_ref = ref.num_parameters()
    assert n_ref == 2 * V * d + d + L * (4 * d * d + 3 * d * d_ff + 2 * d)

    none = tiny_lm(norm="none")
    assert not any("ln" in k for k in none.state_dict())
    assert none.num_parameters() == n_ref - (2 * L + 1) * d

    for same_keys in (tiny_lm(norm="post"), tiny_lm(position="nope")):
        assert same_keys.state_dict().keys() == ref.state_dict().keys()
    assert all(layer.attn.rope is None for layer in tiny_lm(position="nope").layers)

    silu_lm = tiny_lm(ffn="silu")
    assert silu_lm.state_dict()["layers.0.ffn.w1.weight"].shape == (4 * d, d)
    assert "layers.0.ffn.w3.weight" not in silu_lm.state_dict()
    # at d_ff = 8/3·d_model the two feed-forward kinds have the same size
    assert tiny_lm(d_model=48, num_heads=4, d_ff=128, ffn="swiglu").num_parameters() == tiny_lm(d_model=48, num_heads=4, ffn="silu").num_parameters()

    tied = tiny_lm(tie_embeddings=True)
    assert tied.lm_head.weight is tied.token_embeddings.weight
    assert tied.num_parameters() == n_ref - V * d
    assert tied.state_dict().keys() == ref.state_dict().keys()


def test_tied_model_starts_near_the_uniform_loss():
    """The shared matrix takes the head's small init, so the untrained loss is ≈ ln(vocab) as in
    the untied model, not inflated by N(0, 1) embedding rows used as output weights."""
    from cs336 import cross_entropy

    torch.manual_seed(0)
    V = 512
    ids = torch.randint(0, V, (4, 32))
    for tied in (False, True):
        model = TransformerLM(V, 32, 64, 2, 4, 176, 10000.0, tie_embeddings=tied)
        loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:]).item()
        assert abs(loss - math.log(V)) < 1.0, (tied, loss)


def test_ablations_change_the_function():
    ids = torch.randint(0, 53, (2, 16))
    base = tiny_lm()(ids)
    for kw in ABLATIONS[1:]:
        lm = tiny_lm(**kw)
        if kw.get("ffn") != "silu":
            lm.load_state_dict(tiny_lm().state_dict(), strict=False)
        assert not torch.allclose(lm(ids), base, atol=1e-3), kw


@pytest.mark.parametrize("kw", [dict(norm="mid"), dict(position="alibi"), dict(ffn="relu")])
def test_unknown_ablation_is_a_clear_error(kw):
    with pytest.raises(CS336Error, match=next(iter(kw))):
        tiny_lm(**kw)


def test_too_long_input_is_a_clear_error():
    with pytest.raises(CS336Error, match="context_length"):
        tiny_lm()(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("kw", ABLATIONS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "reference")
def test_fused_path_equals_reference_path_forward_and_gradients(kw):
    assert_fused_equals_reference(kw)


def nudge_parameters(model: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter a little, so none sits at a value that hides a difference (zero
    matrices, unit gains, a zero mix)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def assert_fused_equals_reference(kw, nudge: bool = False):
    """The fused model equals the reference in logits and every parameter's gradient; with `nudge`
    every parameter is moved first (`nudge_parameters`)."""
    ref, fused = tiny_lm(**kw), tiny_lm(fused=True, **kw)
    if nudge:
        nudge_parameters(ref)
    fused.load_state_dict(ref.state_dict())
    ids = torch.randint(0, 53, (3, 16), generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)  # the same dropout masks on both paths (no draws without dropout)
    out_ref = ref(ids)
    torch.manual_seed(3)
    out_fused = fused(ids)
    torch.testing.assert_close(out_fused, out_ref, atol=1e-5, rtol=1e-5)
    (out_ref.square().mean()).backward()
    (out_fused.square().mean()).backward()
    grads_ref, grads_fused = dict(ref.named_parameters()), dict(fused.named_parameters())
    for name, p in grads_ref.items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
        torch.testing.assert_close(grads_fused[name].grad, p.grad, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("fused", [False, True])
def test_bfloat16_runs_and_stays_close_to_float32(fused):
    lm = tiny_lm(fused=fused)
    lm_bf16 = tiny_lm(fused=fused, dtype=torch.bfloat16)
    lm_bf16.load_state_dict(lm.state_dict())
    ids = torch.randint(0, 53, (2, 16))
    out32, out16 = lm(ids), lm_bf16(ids)
    assert out16.dtype == torch.bfloat16 and lm_bf16.layers[0].attn.rope.cos.dtype == torch.float32
    err = (out16.float() - out32).abs().max() / out32.abs().max()
    assert err < 0.05
    out16.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in lm_bf16.parameters())


def test_token_positions_default_to_arange_and_only_differences_matter():
    lm = tiny_lm(context_length=64)
    ids = torch.randint(0, 53, (2, 10))
    out = lm(ids)
    torch.testing.assert_close(lm(ids, token_positions=torch.arange(10)), out)
    # RoPE sees only position differences, so a shifted window gives the same logits ...
    torch.testing.assert_close(lm(ids, token_positions=torch.arange(10).expand(2, 10) + 37), out, atol=1e-4, rtol=1e-4)
    # ... while spreading the positions out changes them
    assert not torch.allclose(lm(ids, token_positions=3 * torch.arange(10)), out, atol=1e-3)


def test_lm_accepts_extra_batch_dims():
    lm = tiny_lm()
    ids = torch.randint(0, 53, (2, 3, 8))
    torch.testing.assert_close(lm(ids), lm(ids.flatten(0, 1)).view(2, 3, 8, 53))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("switches", [dict(num_layers=1), dict(num_layers=2, value_residual=True, residual_scalars=True)], ids=str)
def test_lm_compiles_as_one_graph_without_breaks(fused, switches):
    """fullgraph=True makes any graph break an error; the eager backend keeps the test fast (it
    checks what Dynamo captures, not Inductor's code)."""
    import torch._dynamo

    lm = tiny_lm(fused=fused, **switches)
    ids = torch.randint(0, 53, (2, 16))
    torch._dynamo.reset()
    compiled = torch.compile(lm, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(ids), lm(ids))


# ------------------------------------------------------------------------------------------------
# The benchmark scripts run (their numbers come from running them, see benchmarks/README.md)


def _load_benchmark(name: str):
    import importlib
    import sys
    from pathlib import Path

    bench_dir = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, bench_dir)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(bench_dir)


def test_builtin_benchmark_model_computes_the_same_function_as_ours():
    train_step = _load_benchmark("train_step")
    results = train_step.main(["--config", "tiny", "--rounds", "1", "--steps", "1", "--contenders",
                               "ours-ref", "ours-fused", "builtin"])  # asserts equal logits
    assert set(results["tiny"]) == {"ours-ref", "ours-fused", "builtin", "ceiling"} and results["tiny"]["builtin"]["vs_builtin"] == 1.0
    assert all(0 < r["mfu"] < 1 for r in results["tiny"].values())
    kinds = train_step.main(["--config", "tiny", "--profile", "ours-fused"])["tiny"]["ours-fused"]
    assert kinds["matrix products"] > 0 and kinds["optimizer"] > 0  # the fused AdamW kernel is seen


def test_gpu_benchmark_dry_run_executes_on_cpu():
    gpu = _load_benchmark("gpu_train_step")
    mfu = gpu.main(["--dry-run"])["tiny"]
    assert all(0 < v < 1 for v in mfu.values())
    n = 4 * (4 * 512 * 512 + 3 * 512 * 1344) + 512 * 10_000  # the matmuls' weights: attention, SwiGLU, LM head
    assert gpu.flops_per_token(gpu.CONFIGS["reference"]) == 6 * n + 12 * 4 * 256 * 512  # the docstring's rule


def test_adamw_benchmark_runs_and_checks_foreach_against_the_loop(capsys):
    adamw = _load_benchmark("adamw")
    adamw.main(["--configs", "demo", "--steps", "1", "--rounds", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert all(label in out for label in ("cs336 loop", "cs336 foreach", "torch loop", "torch foreach"))


# ------------------------------------------------------------------------------------------------
# Modern-architecture switches: each off by default, each the same function on both paths

SWITCHES = [
    dict(ffn="relu2"),
    dict(ffn="relu2", silu_d_ff=40),
    dict(qk_norm=True),
    dict(qk_norm=True, position="nope", norm="post"),
    dict(logit_softcap=0.5),
    dict(logit_softcap=30.0, ffn="relu2", qk_norm=True),
    dict(zero_init_output=True),
    dict(zero_init_output=True, ffn="silu", norm="post"),
    dict(value_residual=True),
    dict(value_residual=True, qk_norm=True, norm="post"),
    dict(residual_scalars=True),
    dict(residual_scalars=True, norm="none", position="nope"),
    dict(value_residual=True, residual_scalars=True, ffn="relu2", num_layers=3),
    dict(dropout=0.25),
    dict(dropout=0.1, value_residual=True, residual_scalars=True, norm="post", num_layers=3),
]


def _switch_id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("kw", SWITCHES, ids=_switch_id)
def test_switch_fused_path_equals_reference_path_forward_and_gradients(kw):
    assert_fused_equals_reference(kw, nudge=True)


@pytest.mark.parametrize("fused", [False, True])
def test_relu2_ffn_is_w2_of_squared_relu_w1(fused):
    from cs336.model import ReLU2FFN

    torch.manual_seed(0)
    ffn, x = ReLU2FFN(8, 20, fused=fused), torch.randn(3, 8)
    expected = torch.relu(x @ ffn.w1.weight.T) ** 2 @ ffn.w2.weight.T
    torch.testing.assert_close(ffn(x), expected)


def test_relu2_ffn_has_the_silu_ffn_matrices_and_width():
    d = 32
    relu2, silu_lm = tiny_lm(ffn="relu2"), tiny_lm(ffn="silu")
    shapes = lambda lm: {k: tuple(v.shape) for k, v in lm.state_dict().items()}  # noqa: E731
    assert shapes(relu2) == shapes(silu_lm)
    assert relu2.state_dict()["layers.0.ffn.w1.weight"].shape == (4 * d, d)
    assert tiny_lm(ffn="relu2", silu_d_ff=40).state_dict()["layers.0.ffn.w2.weight"].shape == (d, 40)
    ids = torch.randint(0, 53, (2, 16))
    assert not torch.allclose(relu2(ids), silu_lm(ids), atol=1e-3)


def test_qk_norm_adds_a_gain_of_head_size_for_queries_and_keys_per_layer():
    ref, qk = tiny_lm(), tiny_lm(qk_norm=True)
    extra = {k: tuple(v.shape) for k, v in qk.state_dict().items() if k not in ref.state_dict()}
    assert extra == {f"layers.{i}.attn.{n}_norm.weight": (8,) for i in range(2) for n in "qk"}
    assert qk.num_parameters() == ref.num_parameters() + 2 * 2 * 8


def test_qk_norm_normalises_each_head_of_q_and_k_before_rope():
    """Scaling a head's query or key projection leaves the normalised scores, hence the output, unchanged."""
    mhsa = MultiHeadSelfAttention(24, 3, max_seq_len=16, theta=10000.0, qk_norm=True)
    x = torch.randn(2, 5, 24)
    out = mhsa(x)
    with torch.no_grad():
        mhsa.q_proj.weight[8:16] *= 7.0  # head 1's queries
        mhsa.k_proj.weight[:8] *= 0.2  # head 0's keys
    torch.testing.assert_close(mhsa(x), out, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kw", SWITCHES, ids=_switch_id)
def test_switch_with_kv_cache_equals_the_full_forward(kw):
    """Chunks read through the cache give the logits of one full forward: what a switch computes
    per token (x0, the first layer's values) must be there for the new tokens, and the cached
    tokens' keys and values must be the ones they were attended with."""
    from cs336.model.kv_cache import KVCache

    ids = torch.randint(0, 53, (2, 12))
    full = nudge_parameters(tiny_lm(**kw)).eval()  # a cache serves generation: no dropout
    for fused in (False, True):
        lm = tiny_lm(fused=fused, **kw).eval()
        lm.load_state_dict(full.state_dict())
        cache = KVCache(lm.num_layers)
        steps = torch.cat([lm(ids[:, a:b], kv_cache=cache) for a, b in ((0, 7), (7, 8), (8, 12))], dim=1)
        torch.testing.assert_close(steps, full(ids), atol=1e-5, rtol=1e-5)


def test_logit_softcap_is_c_tanh_of_the_logits_over_c():
    ids = torch.randint(0, 53, (2, 16))
    logits = tiny_lm()(ids)
    for fused in (False, True):
        capped = tiny_lm(logit_softcap=0.5, fused=fused)(ids)
        torch.testing.assert_close(capped, 0.5 * torch.tanh(logits / 0.5), atol=1e-6, rtol=1e-5)
        assert capped.abs().max() < 0.5 and not torch.allclose(capped, logits, atol=1e-3)
    assert tiny_lm(logit_softcap=0.5).state_dict().keys() == tiny_lm().state_dict().keys()


@pytest.mark.parametrize("cap", [None, 0.5])
def test_the_trainers_loss_of_the_hidden_states_equals_the_loss_of_the_logits(cap):
    """`head=False` stops before the LM head; `next_token_loss` (the trainer's) applies the head and
    the soft-cap inside the loss for a fused model and gets the reference path's loss and gradients."""
    ids, targets = torch.randint(0, 53, (2, 16)), torch.randint(0, 53, (2, 16))
    ref, fused = tiny_lm(logit_softcap=cap), tiny_lm(logit_softcap=cap, fused=True)
    fused.load_state_dict(ref.state_dict())
    hidden = fused(ids, head=False)
    assert hidden.shape == (2, 16, fused.d_model)
    torch.testing.assert_close(fused(ids), fused.lm_head(hidden) if cap is None else cap * torch.tanh(fused.lm_head(hidden) / cap))
    losses = {}
    for name, lm in (("ref", ref), ("fused", fused)):
        loss = next_token_loss(lm, ids, targets)
        losses[name] = (loss, torch.autograd.grad(loss, list(lm.parameters())))
    torch.testing.assert_close(losses["fused"][0], losses["ref"][0])
    for a, b in zip(losses["fused"][1], losses["ref"][1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("cap", [0.0, -1.0, float("nan")])
def test_logit_softcap_must_be_positive(cap):
    with pytest.raises(CS336Error, match="logit_softcap"):
        tiny_lm(logit_softcap=cap)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("ffn", ["swiglu", "relu2"])
def test_zero_init_output_starts_every_block_as_the_identity(fused, ffn):
    lm, ref = tiny_lm(zero_init_output=True, ffn=ffn, fused=fused), tiny_lm(ffn=ffn, fused=fused)
    assert lm.state_dict().keys() == ref.state_dict().keys()
    for name, p in lm.named_parameters():
        assert (p == 0).all() == name.endswith(("attn.output_proj.weight", "ffn.w2.weight")), name
    ids = torch.randint(0, 53, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(lm(ids), lm.lm_head(lm.ln_final(lm.token_embeddings(ids))))
    # the zero matrices still learn: their gradients are not zero
    lm(ids).square().mean().backward()
    assert all(layer.attn.output_proj.weight.grad.abs().sum() > 0 and layer.ffn.w2.weight.grad.abs().sum() > 0
               for layer in lm.layers)


def _extra_parameters(switch: dict, **shape) -> dict[str, tuple[int, ...]]:
    """The state-dict entries a switch adds to the model without it; the shared ones must be equal
    (a switch draws no random numbers that would shift the others' initialisation)."""
    on, off = tiny_lm(**switch, **shape).state_dict(), tiny_lm(**shape).state_dict()
    for key, value in off.items():
        assert torch.equal(on[key], value), key
    return {k: tuple(v.shape) for k, v in on.items() if k not in off}


def test_value_residual_adds_one_mix_scalar_to_every_layer_after_the_first():
    assert _extra_parameters(dict(value_residual=True), num_layers=3) == {
        "layers.1.attn.value_mix": (), "layers.2.attn.value_mix": ()}
    lm = tiny_lm(value_residual=True, num_layers=3)
    assert [layer.attn.value_mix.item() for layer in lm.layers[1:]] == [0.5, 0.5]
    assert lm.num_parameters() == tiny_lm(num_layers=3).num_parameters() + 2


@pytest.mark.parametrize("fused", [False, True])
def test_value_residual_mixes_the_values_as_it_would_mix_the_value_projections(fused):
    """Values are linear in W_v, so (1 − λ)·v + λ·v₁ with v₁ = x W₁ᵀ is the attention of a layer whose
    value projection is (1 − λ)·W_v + λ·W₁: λ = 0 is the layer without the switch, λ = 1 uses v₁ alone."""
    torch.manual_seed(0)
    mixing = MultiHeadSelfAttention(24, 3, max_seq_len=16, theta=10000.0, value_residual=True, fused=fused)
    plain = MultiHeadSelfAttention(24, 3, max_seq_len=16, theta=10000.0, fused=fused)
    plain.load_state_dict(mixing.state_dict(), strict=False)
    x, w1 = torch.randn(2, 5, 24), torch.randn(24, 24)
    first_values = (x @ w1.T).unflatten(-1, (3, 8)).transpose(1, 2)  # (batch, heads, seq, d_k)
    for lam in (0.0, 0.3, 1.0):
        with torch.no_grad():
            mixing.value_mix.fill_(lam)
            plain.v_proj.weight.copy_((1 - lam) * mixing.v_proj.weight + lam * w1)
        out, values = mixing(x, first_values=first_values, return_values=True)
        torch.testing.assert_close(out, plain(x), atol=1e-5, rtol=1e-5)
        mixed_values = plain.v_proj(x).unflatten(-1, (3, 8)).transpose(1, 2)
        torch.testing.assert_close(values, mixed_values, atol=1e-5, rtol=1e-5)
    with pytest.raises(CS336Error, match="first_values"):
        mixing(x)


@pytest.mark.parametrize("fused", [False, True])
def test_value_residual_with_every_mix_at_zero_is_the_model_without_it(fused):
    lm, ref = tiny_lm(value_residual=True, fused=fused), tiny_lm(fused=fused)
    with torch.no_grad():
        for layer in lm.layers[1:]:
            layer.attn.value_mix.zero_()
    ids = torch.randint(0, 53, (2, 16))
    assert torch.equal(lm(ids), ref(ids))
    assert not torch.allclose(tiny_lm(value_residual=True, fused=fused)(ids), ref(ids), atol=1e-3)


def test_residual_scalars_add_a_stream_mix_and_two_branch_gains_to_every_block():
    assert _extra_parameters(dict(residual_scalars=True)) == {
        f"layers.{i}.{name}": (2,) for i in range(2) for name in ("stream_mix", "branch_gains")}
    lm = tiny_lm(residual_scalars=True)
    assert all(layer.stream_mix.tolist() == [1.0, 0.0] and layer.branch_gains.tolist() == [1.0, 1.0] for layer in lm.layers)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("norm", ["pre", "post", "none"])
def test_residual_scalars_at_init_are_the_model_without_them(fused, norm):
    ids = torch.randint(0, 53, (2, 16))
    lm, ref = tiny_lm(residual_scalars=True, norm=norm, fused=fused), tiny_lm(norm=norm, fused=fused)
    assert torch.equal(lm(ids), ref(ids))


def test_residual_scalars_compute_the_documented_block():
    """x ← λ_x·x + λ_0·x0; y = x + g_attn·attn(ln1(x)); z = y + g_ffn·ffn(ln2(y))."""
    torch.manual_seed(0)
    block = nudge_parameters(TransformerBlock(32, 4, 48, 16, 10000.0, residual_scalars=True))
    x, x0 = torch.randn(2, 6, 32), torch.randn(2, 6, 32)
    (lx, l0), (ga, gf) = block.stream_mix, block.branch_gains
    mixed = lx * x + l0 * x0
    y = mixed + ga * block.attn(block.ln1(mixed))
    torch.testing.assert_close(block(x, x0=x0), y + gf * block.ffn(block.ln2(y)))
    torch.testing.assert_close(block(x), block(x, x0=x))  # the first block's stream is x0


def test_training_with_value_residual_and_residual_scalars_lowers_the_loss_and_moves_the_scalars():
    from cs336 import AdamW, cross_entropy

    lm = tiny_lm(value_residual=True, residual_scalars=True, num_layers=3)
    tokens = torch.randint(0, 53, (4, 17), generator=torch.Generator().manual_seed(0))
    x, y = tokens[:, :-1], tokens[:, 1:]
    opt = AdamW(lm.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = cross_entropy(lm(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(layer.attn.value_mix.item() != 0.5 for layer in lm.layers[1:])
    assert all(layer.stream_mix[1].item() != 0.0 and layer.branch_gains[0].item() != 1.0 for layer in lm.layers)


def test_dropout_zeroes_a_share_p_and_scales_the_rest_as_torch_does():
    """The same values as torch.nn.functional.dropout (0 or x/(1 − p)) in the same proportions."""
    from cs336.model.functional import dropout

    x = torch.full((200_000,), 2.0)
    torch.manual_seed(0)
    ours, theirs = dropout(x, 0.3), torch.nn.functional.dropout(x, 0.3)
    torch.testing.assert_close(ours.unique(), theirs.unique())
    torch.testing.assert_close(ours.unique(), torch.tensor([0.0, 2 / 0.7]))
    assert abs((ours == 0).float().mean().item() - 0.3) < 0.005 and abs(ours.mean().item() - 2.0) < 0.02
    assert dropout(x, 0.0) is x and dropout(x, 0.3, training=False) is x


@pytest.mark.parametrize("fused", [False, True])
def test_dropout_is_off_in_eval_mode_and_on_in_training(fused):
    ids = torch.randint(0, 53, (2, 16))
    lm, ref = tiny_lm(dropout=0.2, fused=fused), tiny_lm(fused=fused)
    lm.eval()
    assert torch.equal(lm(ids), ref(ids))  # evaluation and generation see the whole model
    lm.train()
    torch.manual_seed(1)
    a = lm(ids)
    torch.manual_seed(1)
    assert torch.equal(lm(ids), a) and not torch.allclose(a, ref(ids), atol=1e-3)  # seeded masks, not the plain model
    with pytest.raises(CS336Error, match="dropout=1"):
        tiny_lm(dropout=1)
