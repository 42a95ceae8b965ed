"""Specifications of Muon and of the Muon + AdamW split: equal to torch.optim.Muon bit for bit in
bfloat16, equal to a slow SVD reference in float32, and a drop-in optimizer for the trainer."""

from __future__ import annotations

import dataclasses
import doctest
import io
from types import SimpleNamespace

import pytest
import torch

from cs336 import AdamW, Muon, TransformerLM, cross_entropy, load_checkpoint, save_checkpoint
from cs336.errors import CS336Error
from cs336.training import muon as muon_module
from cs336.training.config import OptimConfig
from cs336.runs import build_optimizer, split_hidden_matrices
from cs336.training.muon import NS_COEFFICIENTS, MuonAdamW, newton_schulz

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, LR, MOMENTUM = 20, 0.02, 0.95
SHAPES = [(16, 16), (16, 48), (48, 16), (1, 64), (64, 1)]  # square, wide, tall, a row, a column
ADJUST_LR_FNS = [None, "original", "match_rms_adamw"]
EPS32 = torch.finfo(torch.float32).eps / 2  # float32's unit roundoff, 2⁻²⁴
# After 5 steps the quintic maps every x in [0.0015, 1] (a singular value over ‖G‖_F) into this band
# (its minimum and maximum there, evaluated on a fine grid in float64).
BAND, BAND_FROM = (0.6818, 1.2024), 0.0015


def gradients(shape, steps=STEPS, seed=0) -> list[torch.Tensor]:
    """A fixed sequence of gradients whose scale changes from step to step, as real ones do."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * (0.5 + t / steps) for t in range(steps)]


def trajectory(make_optimizer, shape, grads, dtype=torch.float32) -> list[torch.Tensor]:
    """The parameter after each step of `make_optimizer([W])` fed `grads` (the same W₀ always)."""
    W = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype))
    opt = make_optimizer([W])
    out = []
    for g in grads:
        W.grad = g.to(dtype)
        opt.step()
        out.append(W.detach().clone())
    return out


def spectral_newton_schulz(G: torch.Tensor, steps=5, coefficients=NS_COEFFICIENTS, eps=1e-7) -> torch.Tensor:
    """The slow, plainly right Newton–Schulz: take the SVD in float64 and apply the quintic to each
    singular value (X·Xᵀ·X = U·S³·Vᵀ, so the matrix iteration does exactly this)."""
    a, b, c = coefficients
    U, s, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    x = s / s.norm().clamp(min=eps)  # ‖G‖_F = ‖s‖₂
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return U @ torch.diag(x) @ Vh


def reference_muon(W0, grads, *, lr, weight_decay, momentum, nesterov, adjust_lr_fn) -> list[torch.Tensor]:
    """Muon as the module docstring writes it, in float64 with the SVD Newton–Schulz."""
    m, n = W0.shape
    r = 0.2 * max(m, n) ** 0.5 if adjust_lr_fn == "match_rms_adamw" else max(1, m / n) ** 0.5
    W, B, out = W0.double(), torch.zeros(m, n, dtype=torch.float64), []
    for G in grads:
        G = G.double()
        B = momentum * B + (1 - momentum) * G
        M = (1 - momentum) * G + momentum * B if nesterov else B
        W = W * (1 - lr * weight_decay) - lr * r * spectral_newton_schulz(M)
        out.append(W)
    return out


# ------------------------------------------------------------------------ equal to torch.optim.Muon
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("adjust_lr_fn", ADJUST_LR_FNS)
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bfloat16_muon_equals_torch_muon_bit_for_bit(shape, nesterov, adjust_lr_fn, weight_decay):
    """Tolerance zero, and why that is the right one: both sides compute the momentum (`lerp` in
    float32), the Newton–Schulz iteration (cast to bfloat16, divide by the Frobenius norm, `addmm`
    rounding once per fused product-and-sum) and the update (`mul_` then `add_` with alpha, the lr
    adjustment evaluated as lr·(ratio)) with the same operations in the same order, on the same CPU
    kernels in one process, so every intermediate has the same bits. Any other arrangement of the
    same bfloat16 arithmetic is not more wrong but different: rounding the products and sums one
    by one moves O by ≈ 3% of its norm per step (measured), which would need a tolerance so wide
    that it says little; the float32 test below pins the algorithm to 1e-5 instead."""
    hyper = dict(lr=LR, weight_decay=weight_decay, momentum=MOMENTUM, nesterov=nesterov, adjust_lr_fn=adjust_lr_fn)
    grads = gradients(shape)
    ours = trajectory(lambda p: Muon(p, **hyper), shape, grads)
    ref = trajectory(lambda p: torch.optim.Muon(p, **hyper), shape, grads)
    for t, (a, b) in enumerate(zip(ours, ref)):
        assert torch.equal(a, b), f"step {t + 1}: max |Δ| = {(a - b).abs().max():.3g}"


def test_bfloat16_parameters_update_like_torch():
    shape, grads = (16, 48), gradients((16, 48))
    ours = trajectory(lambda p: Muon(p, lr=LR), shape, grads, torch.bfloat16)
    ref = trajectory(lambda p: torch.optim.Muon(p, lr=LR), shape, grads, torch.bfloat16)
    assert all(torch.equal(a, b) for a, b in zip(ours, ref))


def test_bfloat16_parameters_without_nesterov_keep_their_momentum_unlike_torch():
    """Where torch 2.13 departs from its own algorithm: for a bfloat16 parameter without Nesterov
    the iteration's input is the momentum buffer itself, already bfloat16, and torch normalises it
    in place (its norm becomes 1). Here the buffer stays B = (1−μ)·G after one step from zero."""
    g = torch.randn(8, 16, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16) * 5
    buffers = []
    for cls in (Muon, torch.optim.Muon):
        W = torch.nn.Parameter(torch.zeros(8, 16, dtype=torch.bfloat16))
        opt = cls([W], lr=LR, nesterov=False)
        W.grad = g
        opt.step()
        buffers.append(opt.state[W]["momentum_buffer"])
    ours, theirs = buffers
    assert torch.equal(ours, torch.zeros_like(g).lerp_(g, 1 - MOMENTUM))
    assert torch.linalg.matrix_norm(theirs.float()).item() == pytest.approx(1.0, abs=0.01)


# ------------------------------------------------------------------- float32 against the SVD reference
@pytest.mark.parametrize("shape", SHAPES + [(96, 256), (256, 96)], ids=str)
def test_float32_newton_schulz_equals_the_polynomial_on_the_singular_values(shape):
    """float32 matrix products over k ≤ 256 terms err by ≲ √k·2⁻²⁴ ≈ 1e-6 relative; ten of them per
    5 steps, and p's slope (≤ a = 3.4) on the smallest singular values, stay below 1e-5 of ‖O‖₂ per
    entry (measured: < 1e-6 at these shapes, 1e-5 at 1344 × 512). bfloat16 misses it by 300–900×."""
    G = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    ref = spectral_newton_schulz(G)
    tol = 1e-5 * torch.linalg.matrix_norm(ref, 2)
    torch.testing.assert_close(newton_schulz(G, dtype=torch.float32).double(), ref, rtol=0, atol=tol)
    assert (newton_schulz(G, dtype=torch.bfloat16).double() - ref).abs().max() > 100 * tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(64, 64), (64, 256), (256, 64)], ids=str)
def test_orthogonalised_singular_values_lie_in_the_documented_band(shape, dtype):
    """NS(G) keeps G's singular vectors and maps each singular value x·‖G‖_F with x ≥ 0.0015 into
    [0.68, 1.21] (`newton_schulz`'s docstring); smaller ones stay small (a random square matrix has
    singular values near 0, so the band is checked where it is promised). bfloat16 adds ≈ 1% of
    ‖O‖ of rounding (the Frobenius error measured against the exact polynomial), so its band is
    widened by 0.03."""
    G = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    U, s, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    O = newton_schulz(G, dtype=dtype).double()
    image = torch.diagonal(U.T @ O @ Vh.T)  # O's singular values, in the order of G's
    slack = 1e-5 if dtype == torch.float32 else 0.03
    promised = s / s.norm() >= BAND_FROM
    assert promised.sum() >= 0.9 * len(s)
    assert BAND[0] - slack <= image[promised].min() and image.max() <= BAND[1] + slack
    # the same singular vectors: nothing of O is left off the diagonal of Uᵀ·O·V
    off_diagonal = U.T @ O @ Vh.T - torch.diag(image)
    assert off_diagonal.abs().max() < slack


def test_a_zero_gradient_gives_a_zero_update_not_nan():
    assert torch.equal(newton_schulz(torch.zeros(4, 6), dtype=torch.float32), torch.zeros(4, 6))


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("adjust_lr_fn", ADJUST_LR_FNS)
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float32_muon_equals_the_float64_svd_reference(shape, nesterov, adjust_lr_fn, weight_decay):
    """torch's Newton–Schulz always runs in bfloat16, so float32 Muon is checked against the
    reference above. Its error after T steps is at most the sum of each step's: float32 rounding of
    W·(1 − lrλ) and of the step (2·2⁻²⁴·|W|), and lr·r times the iteration's error, ≤ 1e-5·‖O‖₂ per
    entry (previous test) with ‖O‖₂ ≤ 1.21 (the band's top). The bfloat16 path is > 10× outside it."""
    hyper = dict(lr=LR, weight_decay=weight_decay, momentum=MOMENTUM, nesterov=nesterov, adjust_lr_fn=adjust_lr_fn)
    grads = gradients(shape)
    ours = trajectory(lambda p: Muon(p, **hyper, ns_dtype=torch.float32), shape, grads)
    W0 = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    ref = reference_muon(W0, grads, **hyper)
    lr_r = muon_module.adjusted_lr(LR, shape, adjust_lr_fn)
    for t, (a, b) in enumerate(zip(ours, ref)):
        tol = (t + 1) * (2 * EPS32 * b.abs().max() + lr_r * 1e-5 * BAND[1])
        torch.testing.assert_close(a.double(), b, rtol=0, atol=tol, msg=f"step {t + 1}")
    bf16 = trajectory(lambda p: Muon(p, **hyper), shape, grads)
    assert (bf16[-1].double() - ref[-1]).abs().max() > 10 * tol


def test_nesterov_looks_one_average_ahead_and_first_differs_on_the_second_step():
    """Fails if `nesterov` is ignored or misread. From B₀ = 0 the first Nesterov input is
    (1−μ)·G₁ + μ(1−μ)·G₁, parallel to G₁, and NS removes the scale: step 1 is the same with and
    without Nesterov, up to float32 rounding. From step 2 on the inputs point elsewhere, and torch
    agrees on which is which."""
    shape, grads = (16, 48), gradients((16, 48))
    with_, without = (trajectory(lambda p: Muon(p, lr=LR, nesterov=n, ns_dtype=torch.float32), shape, grads)
                      for n in (True, False))
    torch.testing.assert_close(with_[0], without[0], rtol=0, atol=1e-6)
    assert (with_[1] - without[1]).abs().max() > 1e-3
    with_, without = (trajectory(lambda p: Muon(p, lr=LR, nesterov=n), shape, grads) for n in (True, False))
    torch_without = trajectory(lambda p: torch.optim.Muon(p, lr=LR, nesterov=False), shape, grads)
    assert (with_[-1] - torch_without[-1]).abs().max() > 1e-2
    assert torch.equal(without[-1], torch_without[-1])


# ------------------------------------------------------------------------------- state and errors
def test_state_dict_round_trips_and_loads_into_torch_muon():
    """Ten steps, a state dict through torch.save/torch.load(weights_only=True), ten more: the same
    bits as twenty uninterrupted steps, whether ours or torch.optim.Muon resumes (same state names)."""
    shape, grads = (48, 16), gradients((48, 16))
    straight = trajectory(lambda p: Muon(p, lr=LR), shape, grads)[-1]
    for resume in (Muon, torch.optim.Muon):
        W = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(1)))
        opt = Muon([W], lr=LR)
        for t, g in enumerate(grads):
            if t == 10:
                buffer = io.BytesIO()
                torch.save(opt.state_dict(), buffer)
                buffer.seek(0)
                opt = resume([W], lr=1.0, momentum=0.0)  # hyper-parameters come from the state dict
                opt.load_state_dict(torch.load(buffer, weights_only=True))
            W.grad = g
            opt.step()
        assert set(opt.state[W]) == {"momentum_buffer"}
        assert torch.equal(W.detach(), straight), resume


def test_ns_dtype_is_how_to_compute_not_state():
    W = torch.nn.Parameter(torch.randn(4, 6))
    opt = Muon([W], ns_dtype=torch.float32)
    assert "ns_dtype" not in opt.state_dict()["param_groups"][0]
    fresh = Muon([W])
    fresh.load_state_dict(opt.state_dict())
    assert fresh.ns_dtype == torch.bfloat16


def test_parameters_without_gradient_are_skipped():
    a, b = torch.nn.Parameter(torch.ones(3, 4)), torch.nn.Parameter(torch.ones(3, 4))
    opt = Muon([a, b], lr=0.1)
    a.grad = torch.randn(3, 4)
    opt.step()
    assert torch.equal(b, torch.ones(3, 4)) and not torch.equal(a, torch.ones(3, 4)) and b not in opt.state


@pytest.mark.parametrize("shape", [(8,), (), (2, 3, 4)], ids=str)
def test_only_matrices_are_accepted_and_the_error_says_to_use_adamw(shape):
    with pytest.raises(ValueError, match="use AdamW for embeddings, the LM head, norm gains and scalars"):
        Muon([torch.nn.Parameter(torch.zeros(4, 4)), torch.nn.Parameter(torch.zeros(shape))])


@pytest.mark.parametrize("kwargs", [
    {"lr": -1}, {"momentum": -0.1}, {"weight_decay": -0.1}, {"adjust_lr_fn": "rms"},
    {"ns_coefficients": (1.0, 2.0)}, {"ns_steps": 100}, {"ns_dtype": torch.float16},
])
def test_invalid_hyperparameters_are_rejected_like_adamw_does(kwargs):
    with pytest.raises(ValueError):
        Muon([torch.nn.Parameter(torch.zeros(2, 2))], **kwargs)


def test_the_module_docstring_examples_hold():
    assert doctest.testmod(muon_module).failed == 0


# ------------------------------------------------------------------------- Muon + AdamW on a model
def tiny_lm(**kw) -> TransformerLM:
    args = dict(vocab_size=53, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=48, rope_theta=10000.0)
    torch.manual_seed(0)
    return TransformerLM(**(args | kw))


def fixed_batch(vocab=53, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, vocab, (4, 17), generator=torch.Generator().manual_seed(seed))
    return tokens[:, :-1], tokens[:, 1:]


def muon_config(**kw) -> SimpleNamespace:
    """An OptimConfig with the Muon fields, whether or not OptimConfig has them yet."""
    fields = dict(name="muon", muon_lr=0.02, muon_momentum=0.95, muon_weight_decay=0.0,
                  muon_adjust_lr_fn="original", ns_dtype="bfloat16")
    return SimpleNamespace(**(dataclasses.asdict(OptimConfig()) | fields | kw))


BLOCK_MATRICES = ["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.output_proj", "ffn.w1", "ffn.w2", "ffn.w3"]


@pytest.mark.parametrize("kw", [{}, {"tie_embeddings": True}, {"ffn": "silu"}, {"norm": "none"},
                                {"value_residual": True, "residual_scalars": True}], ids=str)
def test_muon_gets_the_blocks_matrices_and_adamw_everything_else_once(kw):
    model = tiny_lm(**kw)
    names = {id(p): n for n, p in model.named_parameters()}
    modules = dict(model.named_modules())
    hidden, rest = split_hidden_matrices(model)
    expected = {f"layers.{i}.{m}.weight" for i in range(2) for m in BLOCK_MATRICES if f"layers.{i}.{m}" in modules}
    assert {names[id(p)] for p in hidden} == expected
    assert len(expected) == 2 * (6 if kw.get("ffn") == "silu" else 7)
    in_blocks = ("ln1.weight", "ln2.weight", "attn.value_mix", "stream_mix", "branch_gains")
    for name in (names[id(p)] for p in rest):  # embeddings, head, norm gains, scalars
        assert name.split(".")[0] != "layers" or name.split(".", 2)[2] in in_blocks, name
    opt = build_optimizer(model, muon_config())
    grouped = [id(p) for group in opt.param_groups for p in group["params"]]
    assert sorted(grouped) == sorted(names) and len(grouped) == len(set(grouped))  # each exactly once


def test_muon_adamw_lowers_the_loss_on_a_fixed_batch_and_muon_does_its_share():
    """15 steps memorise a fixed batch (4.4 → 0.4); with the blocks' matrices frozen (muon_lr = 0)
    AdamW alone on embeddings, head and gains gets to 1.6."""
    def final_loss(muon_lr: float) -> float:
        model, (x, y) = tiny_lm(), fixed_batch()
        opt = build_optimizer(model, muon_config(lr=1e-2, muon_lr=muon_lr))
        for _ in range(15):
            loss = cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()

    first = cross_entropy(tiny_lm()(fixed_batch()[0]), fixed_batch()[1]).item()
    assert final_loss(0.02) < 0.2 * first
    assert final_loss(0.02) < 0.5 * final_loss(0.0)


def test_muon_groups_follow_the_schedule_scaled_to_their_own_peak():
    """The trainer writes its schedule's value into every group's "lr" (in AdamW's units). Muon's
    groups then step at that value · muon_lr / lr, AdamW's at the value itself: the same as a Muon
    and an AdamW built with those rates."""
    lr, muon_lr, schedule = 1e-3, 0.02, [0.0, 2.5e-4, 1e-3, 6e-4]
    model, (x, y) = tiny_lm(), fixed_batch()
    twin = tiny_lm()
    opt = build_optimizer(model, muon_config(lr=lr, muon_lr=muon_lr))
    hidden, rest = split_hidden_matrices(twin)
    muon, adamw = Muon(hidden, lr=muon_lr, weight_decay=0.0), AdamW(rest, lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    for value in schedule:
        for group in opt.param_groups:
            group["lr"] = value
        muon.param_groups[0]["lr"], adamw.param_groups[0]["lr"] = value * muon_lr / lr, value
        for m, optimizers in ((model, [opt]), (twin, [muon, adamw])):
            for o in optimizers:
                o.zero_grad()
            cross_entropy(m(x), y).backward()
            for o in optimizers:
                o.step()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(a, b), name
    assert [g["lr"] for g in opt.param_groups] == [schedule[-1]] * 2  # stepping leaves "lr" as written


def test_muon_adamw_resumes_from_a_checkpoint_exactly(tmp_path):
    """Through cs336's own save_checkpoint/load_checkpoint (torch.load with weights_only=True)."""
    batches = [fixed_batch(seed=s) for s in range(6)]

    def train(model, opt, part):
        for x, y in part:
            opt.zero_grad()
            cross_entropy(model(x), y).backward()
            opt.step()

    straight = tiny_lm()
    train(straight, build_optimizer(straight, muon_config()), batches)
    model = tiny_lm()
    opt = build_optimizer(model, muon_config())
    train(model, opt, batches[:3])
    save_checkpoint(model, opt, 3, tmp_path / "ckpt.pt")
    model = tiny_lm()
    opt = build_optimizer(model, muon_config(muon_lr=0.5))  # "lr_scale" comes back from the checkpoint
    assert load_checkpoint(tmp_path / "ckpt.pt", model, opt) == 3
    train(model, opt, batches[3:])
    for a, b in zip(model.parameters(), straight.parameters()):
        assert torch.equal(a, b)


def test_build_optimizer_names_the_optimizer():
    model = tiny_lm()
    adamw = build_optimizer(model, muon_config(name="adamw", lr=3e-3))
    assert type(adamw) is AdamW and adamw.param_groups[0]["lr"] == 3e-3
    hybrid = build_optimizer(model, muon_config(ns_dtype="float32", muon_momentum=0.9))
    assert isinstance(hybrid, MuonAdamW) and hybrid.muon.ns_dtype == torch.float32
    assert hybrid.muon.param_groups[0]["momentum"] == 0.9
    with pytest.raises(CS336Error, match="optim.name='sgd'"):
        build_optimizer(model, muon_config(name="sgd"))
    with pytest.raises(CS336Error, match="optim.ns_dtype='float16'"):
        build_optimizer(model, muon_config(ns_dtype="float16"))
    with pytest.raises(CS336Error, match="this model has none"):
        build_optimizer(tiny_lm(num_layers=0), muon_config())


@pytest.mark.parametrize("name", ["adamw", "muon"])
@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_decay_on_matrices_spares_embeddings_gains_and_scalars(name, tie):
    """With zero gradients an AdamW step is its decay alone, θ ← θ·(1 − lr·λ): with decay_on="matrices"
    it shrinks the 2-D weights AdamW holds (all block matrices for "adamw", and an untied LM head)
    and leaves the token embedding (so also a tied head), the norm gains and the scalars as they were."""
    model = tiny_lm(tie_embeddings=tie, residual_scalars=True, value_residual=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = build_optimizer(model, muon_config(name=name, lr=0.1, weight_decay=0.5, decay_on="matrices"))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    muon_owned = {id(p) for p in split_hidden_matrices(model)[0]} if name == "muon" else set()
    for key, p in model.state_dict(keep_vars=True).items():
        decayed = p.ndim == 2 and p is not model.token_embeddings.weight and id(p) not in muon_owned
        if id(p) in muon_owned:
            continue  # Muon's own decay (muon_weight_decay = 0 here)
        expected = before[key] * (1 - 0.1 * 0.5) if decayed else before[key]
        torch.testing.assert_close(p.detach(), expected, msg=key)
    assert any(p.ndim == 2 and p is not model.token_embeddings.weight for p in model.parameters())
