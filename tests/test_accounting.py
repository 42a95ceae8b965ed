"""The paper counts of cs336.accounting against instantiated models: parameters against
`sum(p.numel())`, FLOPs against FlopCounterMode, memory against what a real training step holds."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cs336 import AdamW, TransformerLM, cross_entropy
from cs336.accounting import (
    GPT2_SHAPES,
    activation_counts,
    adamw_memory,
    adamw_memory_linear,
    backward_flops,
    forward_flops,
    largest_batch,
    model_config,
    num_parameters,
    parameter_counts,
    training_step_flops,
)
from cs336.errors import CS336Error
from cs336.training.config import load_config
from cs336.runs import build_model

BASE = dict(vocab_size=97, context_length=24, d_model=32, num_layers=2, num_heads=4, d_ff=88)
ABLATIONS = [
    {},
    {"norm": "post"},
    {"norm": "none"},
    {"position": "nope"},
    {"ffn": "silu"},
    {"ffn": "silu", "silu_d_ff": 100},
    {"tie_embeddings": True},
    {"num_layers": 0},
    {"num_layers": 3, "d_model": 48, "num_heads": 6, "d_ff": 128, "vocab_size": 300},
    {"ffn": "relu2"},
    {"ffn": "relu2", "silu_d_ff": 100},
    {"qk_norm": True},
    {"qk_norm": True, "num_heads": 8, "norm": "none"},
    {"logit_softcap": 30.0},
    {"zero_init_output": True},
    {"value_residual": True},
    {"value_residual": True, "num_layers": 1},
    {"residual_scalars": True},
    {"residual_scalars": True, "value_residual": True, "num_layers": 3, "norm": "post"},
]
SWITCHES = ABLATIONS[9:]  # the modern-architecture switches, after the write-up's ablations


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(cfg, device=None):
    torch.manual_seed(0)
    return TransformerLM(**cfg, rope_theta=10000.0, device=device)


# ------------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()) or "reference")
def test_parameter_count_equals_instantiated_model(ablation):
    cfg = {**BASE, **ablation}
    model = _model(cfg)
    assert num_parameters(cfg) == sum(p.numel() for p in model.parameters())
    assert model_config(model) == model_config(cfg)  # reading the shape off a model agrees too


@pytest.mark.parametrize("name", list(GPT2_SHAPES))
def test_gpt2_parameter_counts_equal_meta_device_models(name):
    shape = GPT2_SHAPES[name]
    model = build_model(shape, device="meta")  # the trainer builds the same config: no memory, shapes only
    assert num_parameters(shape) == sum(p.numel() for p in model.parameters())
    by_name = {"token_embeddings": model.token_embeddings.weight.numel(), "lm_head": model.lm_head.weight.numel()}
    counts = parameter_counts(shape)
    assert all(counts[k] == v for k, v in by_name.items())
    assert counts["ffn"] == sum(p.numel() for layer in model.layers for p in layer.ffn.parameters())


def test_shape_from_a_dict_rejects_unknown_keys_and_lists_valid_ones():
    with pytest.raises(CS336Error, match="unknown model keys.*valid: context_length"):
        model_config({**BASE, "d_modle": 3})


@pytest.mark.parametrize("key, bad", [("norm", "layer"), ("position", "alibi"), ("ffn", "gelu")])
def test_a_bad_architecture_choice_is_one_error_from_the_model_the_config_and_the_accounting(key, bad):
    message = f"{key}='{bad}' is not one of"
    with pytest.raises(CS336Error, match=message):
        TransformerLM(**BASE, rope_theta=10000.0, **{key: bad})
    with pytest.raises(CS336Error, match=f"model.{message}"):
        load_config(None, ["max_steps=1", f"model.{key}={bad}"])
    with pytest.raises(CS336Error, match=f"model.{message}"):
        num_parameters({**BASE, key: bad})


def test_an_impossible_shape_is_a_cs336_error_naming_the_keys():
    with pytest.raises(CS336Error, match="model.d_model=32 must be divisible by model.num_heads=5"):
        forward_flops({**BASE, "num_heads": 5})


# ----------------------------------------------------------------------------------------- FLOPs
FLOP_CASES = [(ab, seq, batch) for ab in ABLATIONS[:7] for seq, batch in ((24, 1), (10, 3))]


@pytest.mark.parametrize("ablation,seq,batch", FLOP_CASES + [(sw, 10, 3) for sw in SWITCHES], ids=str)
def test_forward_flops_equal_flop_counter_on_the_reference_path(ablation, seq, batch):
    """FlopCounterMode counts aten matmuls (mm, bmm, addmm, baddbmm, convolutions, SDPA kernels) at
    2mnp and nothing else, so on the einsum reference path its total must equal our matmul count
    exactly: the QKV/output/FFN/head einsums become bmm over weight matrices, and attention's two
    einsums bmm over heads."""
    cfg = {**BASE, **ablation}
    model = _model(cfg)
    x = torch.randint(0, cfg["vocab_size"], (batch, seq))
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert counter.get_total_flops() == sum(forward_flops(cfg, seq, batch).values())


@pytest.mark.parametrize("ablation", [{}, {"ffn": "silu", "norm": "none"}], ids=str)
def test_training_flops_are_three_times_forward_by_flop_counter(ablation):
    cfg = {**BASE, **ablation}
    model = _model(cfg)
    x = torch.randint(0, cfg["vocab_size"], (2, 16))
    with FlopCounterMode(display=False) as counter:
        cross_entropy(model(x), x).backward()
    fwd = sum(forward_flops(cfg, 16, 2).values())
    assert counter.get_total_flops() == fwd + backward_flops(cfg, 16, 2) == 3 * fwd
    assert training_step_flops(cfg, 16, 2, include_optimizer=False) == 3 * fwd


def test_fused_path_projection_flops_equal_the_count():
    """With fused=True the projections run as aten.mm; PyTorch's CPU flash-attention kernel is not
    in FlopCounterMode's registry (at least up to torch 2.13), so only the attention terms may be
    missing from its total."""
    model = TransformerLM(**BASE, rope_theta=10000.0, fused=True)
    x = torch.randint(0, BASE["vocab_size"], (3, 20))
    with FlopCounterMode(display=False) as counter:
        model(x)
    ours = forward_flops(BASE, 20, 3)
    attention = ours["attention_scores"] + ours["attention_weighted_sum"]
    assert counter.get_flop_counts()["Global"][torch.ops.aten.mm] == sum(ours.values()) - attention
    assert counter.get_total_flops() in (sum(ours.values()), sum(ours.values()) - attention)


# ---------------------------------------------------------------------------------------- memory
def _saved_activation_bytes(model, x):
    """Bytes of the distinct storages autograd keeps for backward, parameters excluded: the
    activation memory of a training step, measured with torch.autograd.graph.saved_tensors_hooks."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = cross_entropy(model(x), x)
    return sum(saved.values()), loss


MEMORY_CASES = [{}, {"ffn": "silu", "norm": "none"}, {"position": "nope", "tie_embeddings": True, "num_heads": 8},
                {"ffn": "relu2"}, {"qk_norm": True}, {"logit_softcap": 30.0}, {"value_residual": True},
                {"residual_scalars": True}, {"value_residual": True, "residual_scalars": True, "num_layers": 3}]


@pytest.mark.parametrize("ablation", MEMORY_CASES, ids=str)
def test_activation_model_against_what_autograd_keeps(ablation):
    """The handout's list counts one tensor per operation; autograd on the reference path keeps
    a little more: RMSNorm's normalised input besides its output, q and k before and after RoPE,
    three seq² tensors in attention (masked scores, exp, probabilities) rather than two, SiLU's
    sigmoid. Measured 1.29–1.36× over these configs, so the model must lie in [1, 1.45]× of
    autograd (a missing component, e.g. the seq² terms or the logits, falls outside), and both
    grow linearly in the batch."""
    cfg = {**BASE, **ablation}
    model = _model(cfg)
    measured, predicted = {}, {}
    for batch in (1, 4):
        x = torch.randint(0, cfg["vocab_size"], (batch, cfg["context_length"]))
        measured[batch], _ = _saved_activation_bytes(model, x)
        predicted[batch] = 4 * sum(activation_counts(cfg, batch).values())
        assert predicted[batch] <= measured[batch] <= 1.45 * predicted[batch], (batch, measured[batch] / predicted[batch])
    # per extra sequence (the causal mask and RoPE tables are batch-independent constants)
    slope = (measured[4] - measured[1]) / (predicted[4] - predicted[1])
    assert 1 <= slope <= 1.45


def test_peak_memory_of_a_training_step_against_the_model():
    """Peak of a real step (forward, backward, AdamW step) by category with PyTorch's MemTracker:
    parameters are exact, optimizer state too up to AdamW's 4-byte step counter per tensor and one
    temporary; the
    total lies between the model without gradients (grads are created as activations are freed,
    so the two never peak together) and 1.45× the model (the activation band above)."""
    mem_tracker = pytest.importorskip("torch.distributed._tools.mem_tracker")
    cfg = {**BASE, "vocab_size": 256, "context_length": 32, "d_model": 64}
    model = _model(cfg)
    opt = AdamW(model.parameters())
    n_tensors = len(list(model.parameters()))
    largest = max(p.numel() for p in model.parameters())
    for batch in (1, 6):
        tracker = mem_tracker.MemTracker()
        tracker.track_external(model, opt)
        x = torch.randint(0, cfg["vocab_size"], (batch, cfg["context_length"]))
        with tracker:
            cross_entropy(model(x), x).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        peak = {str(k).split(".")[-1]: v for k, v in tracker.get_tracker_snapshot("peak")[torch.device("cpu")].items()}
        model_bytes = adamw_memory(cfg, batch)
        assert peak["PARAM"] == model_bytes["parameters"]
        # plus, while it runs, the √v + ε temporary of the parameter being updated
        state = model_bytes["optimizer_state"] + 4 * n_tensors
        assert state <= peak["OPT"] <= state + 4 * largest, peak
        buffers = peak["BUFFER"]  # RoPE's cos/sin tables, not parameters
        total = peak["Total"] - buffers
        assert sum(model_bytes.values()) - model_bytes["gradients"] <= total <= 1.45 * sum(model_bytes.values())


def test_memory_is_linear_in_batch_and_largest_batch_fits():
    xl = GPT2_SHAPES["xl"]
    a, b = adamw_memory_linear(xl)
    for batch in (0, 1, 7):
        assert sum(adamw_memory(xl, batch).values()) == a * batch + b
    assert b == 16 * num_parameters(xl)
    limit = 80 * 2**30
    n = largest_batch(xl, limit)
    assert a * n + b <= limit < a * (n + 1) + b


def test_activation_counts_include_every_listed_component():
    counts = activation_counts(GPT2_SHAPES["small"], batch_size=1)
    t, d, h, n, v = 1024, 768, 12, 12, 50257
    assert counts["attention_scores"] == counts["softmax"] == n * h * t * t
    assert counts["lm_head"] == counts["cross_entropy"] == t * v
    assert counts["rmsnorm"] == 2 * n * t * d and counts["final_rmsnorm"] == t * d
    assert counts["ffn_w1"] == counts["ffn_silu"] == counts["ffn_w3"] == counts["ffn_gate"] == n * t * 4 * d
    silu = activation_counts({**BASE, "ffn": "silu"}, 1)
    assert silu["ffn_w3"] == silu["ffn_gate"] == 0


def test_handout_components_against_a_hand_count():
    """The handout's literal list for its AdamW question, counted by hand for one small shape:
    T = 2·6 = 12 tokens, d = 8, 3 blocks, 2 heads, V = 11, d_ff = 4·8 = 32 (the handout's
    assumption, whatever the model's own d_ff)."""
    cfg = dict(vocab_size=11, context_length=6, d_model=8, num_layers=3, num_heads=2, d_ff=24)
    t, d, n, h, seq, v, w = 12, 8, 3, 2, 6, 11, 32
    per_block = (2 * t * d  # the block's two RMSNorms
                 + 3 * t * d  # Q, K, V projections
                 + 2 * h * 2 * seq * seq  # QᵀK and softmax: heads × batch × seq²
                 + t * d + t * d  # weighted sum of values, output projection
                 + t * w + t * w  # W1, SiLU
                 + t * d)  # W2
    hand = n * per_block + t * d + t * v + t * v  # final RMSNorm, logits, cross-entropy
    for variant in ({}, {"ffn": "silu"}, {"norm": "none"}, {"d_ff": 40}):  # none of them changes the list
        counts = activation_counts({**cfg, **variant}, batch_size=2, components="handout")
        assert sum(counts.values()) == hand
        assert counts["ffn_w3"] == counts["ffn_gate"] == 0
    # with d_ff = 4·d the model's own count has exactly W3 and the gate more
    full = activation_counts({**cfg, "d_ff": w}, batch_size=2)
    assert sum(full.values()) - hand == 2 * n * t * w
    a, b = adamw_memory_linear(cfg, components="handout")
    assert (a, b) == (4 * hand // 2, 16 * num_parameters(cfg))  # same static memory, fewer activations
    assert largest_batch(cfg, b + 5 * a, components="handout") == 5
    with pytest.raises(CS336Error, match="components"):
        activation_counts(cfg, 1, components="literal")


@pytest.mark.parametrize("switch", SWITCHES, ids=str)
def test_switch_parameter_counts_equal_meta_device_models(switch):
    shape = model_config({**BASE, **switch})
    model = build_model(shape, device="meta")
    assert num_parameters(shape) == sum(p.numel() for p in model.parameters())
    counts = parameter_counts(shape)
    assert counts["ffn"] == sum(p.numel() for layer in model.layers for p in layer.ffn.parameters())


@pytest.mark.parametrize("cap", [0.0, -2.0])
def test_a_non_positive_logit_softcap_is_refused_by_the_config_and_the_accounting(cap):
    with pytest.raises(CS336Error, match=f"model.logit_softcap={cap} must be positive"):
        load_config(None, ["max_steps=1", f"model.logit_softcap={cap}"])
    with pytest.raises(CS336Error, match=f"model.logit_softcap={cap} must be positive"):
        num_parameters({**BASE, "logit_softcap": cap})
