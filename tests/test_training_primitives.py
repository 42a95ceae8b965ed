"""Specifications of the training primitives, each checked against PyTorch's own version."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cs336 import AdamW, cross_entropy, get_batch, get_lr_cosine_schedule, gradient_clipping
from cs336.training.data import load_tokens
from cs336.training.loss import linear_cross_entropy
from cs336.training.optim import SGD


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 5, 11), (2, 3, 4, 13)], ids=str)
def test_cross_entropy_equals_torch_for_any_leading_dims(shape):
    g = torch.Generator().manual_seed(len(shape))
    logits = torch.randn(*shape, generator=g)
    vocab = shape[-1]
    targets = torch.randint(0, vocab, shape[:-1], generator=g)
    ours = cross_entropy(logits, targets)
    ref = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
    assert ours.shape == ()
    torch.testing.assert_close(ours, ref)


def test_cross_entropy_is_finite_and_exact_for_logits_times_1000():
    g = torch.Generator().manual_seed(0)
    logits = 1000 * torch.randn(4, 8, 50, generator=g)
    targets = torch.randint(0, 50, (4, 8), generator=g)
    ours = cross_entropy(logits, targets)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1)))
    # the naive formula overflows here, which is what the max-subtraction is for
    naive = -torch.log(torch.exp(logits).gather(-1, targets[..., None]) / torch.exp(logits).sum(-1, keepdim=True))
    assert not torch.isfinite(naive).all()


def test_cross_entropy_gradient_equals_torch():
    g = torch.Generator().manual_seed(1)
    a = (100 * torch.randn(6, 9, generator=g)).requires_grad_()
    b = a.detach().clone().requires_grad_()
    targets = torch.randint(0, 9, (6,), generator=g)
    cross_entropy(a, targets).backward()
    F.cross_entropy(b, targets).backward()
    assert torch.isfinite(a.grad).all()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_fused_cross_entropy_equals_the_reference_in_value_and_gradient(scale):
    g = torch.Generator().manual_seed(2)
    a = (scale * torch.randn(2, 3, 4, 17, generator=g)).requires_grad_()
    b = a.detach().clone().requires_grad_()
    targets = torch.randint(0, 17, (2, 3, 4), generator=g)
    ref, fused = cross_entropy(a, targets), cross_entropy(b, targets, fused=True)
    assert fused.shape == ()
    torch.testing.assert_close(fused, ref)
    ref.backward()
    fused.backward()
    torch.testing.assert_close(b.grad, a.grad)


# ------------------------------------------------------------------------------------------- AdamW
def _toy_problem(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).to(dtype)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 8, generator=g, dtype=dtype), torch.randn(64, 4, generator=g, dtype=dtype)
    return model, x, y


def _train(make_optimizer, dtype=torch.float32, steps=1000):
    model, x, y = _toy_problem(dtype)
    opt = make_optimizer(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


LR, WD = 1e-3, 0.01


def test_adamw_is_torch_adamw_up_to_decay_order_and_epsilon_placement_exactly():
    """The handout's θ ← (θ − u)(1 − lrλ) is torch's θ(1 − lr'λ') − u' with lr' = lr(1 − lrλ),
    λ' = λ/(1 − lrλ); with ε = 0 the ε-hat difference vanishes too. In float64 the two optimizers
    then agree over 1,000 steps to rounding (1e-12), so nothing else differs."""
    ours = _train(lambda p: AdamW(p, lr=LR, weight_decay=WD, eps=0.0), torch.float64)
    lr2, wd2 = LR * (1 - LR * WD), WD / (1 - LR * WD)
    ref = _train(lambda p: torch.optim.AdamW(p, lr=lr2, weight_decay=wd2, eps=0.0), torch.float64)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("softcap", [None, 2.0], ids=["no cap", "cap 2"])
@pytest.mark.parametrize("rows", [1, 63, 64, 65, 200], ids=lambda n: f"{n} rows")
def test_linear_cross_entropy_equals_the_head_then_cross_entropy(rows, softcap):
    """Value and gradients (of the hidden states and the head) equal those of the unfused head,
    soft-cap and cross-entropy, with chunks of 64 rows (one row, a chunk exactly, one past it, a
    short last chunk), an incoming gradient other than 1 and targets hitting every kind of logit."""
    g = torch.Generator().manual_seed(rows)
    hidden = (2 * torch.randn(rows, 16, generator=g)).requires_grad_()
    weight = torch.randn(40, 16, generator=g).requires_grad_()
    targets = torch.randint(0, 40, (rows,), generator=g)
    logits = hidden @ weight.T
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    ref = F.cross_entropy(logits, targets)
    ref_grads = torch.autograd.grad(3 * ref, (hidden, weight))
    ours = linear_cross_entropy(hidden, weight, targets, softcap=softcap, chunk_size=64)
    grads = torch.autograd.grad(3 * ours, (hidden, weight))
    torch.testing.assert_close(ours, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_linear_cross_entropy_takes_any_leading_dims_and_needs_no_grad():
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(2, 3, 8, generator=g), torch.randn(11, 8, generator=g)
    targets = torch.randint(0, 11, (2, 3), generator=g)
    with torch.no_grad():
        ours = linear_cross_entropy(hidden, weight, targets, chunk_size=4)
    torch.testing.assert_close(ours, cross_entropy(hidden @ weight.T, targets))


def test_linear_cross_entropy_refuses_a_second_backward():
    """Its gradients are computed in the forward pass and handed over, not copied: a second backward
    through a retained graph would read buffers the first one's consumers may have changed."""
    hidden, weight = torch.randn(3, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.tensor([0, 4, 2]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once"):
        loss.backward()


def test_linear_cross_entropy_accumulates_into_a_tied_matrix():
    """When the head is also the embedding, both uses' gradients reach the one matrix."""
    g = torch.Generator().manual_seed(1)
    table = torch.randn(9, 4, generator=g).requires_grad_()
    ids, targets = torch.randint(0, 9, (5,), generator=g), torch.randint(0, 9, (5,), generator=g)
    (ref,) = torch.autograd.grad(cross_entropy(table[ids] @ table.T, targets), table)
    (ours,) = torch.autograd.grad(linear_cross_entropy(table[ids], table, targets, chunk_size=2), table)
    torch.testing.assert_close(ours, ref)


def test_adamw_tracks_torch_adamw_with_the_same_hyperparameters_over_1000_steps():
    """Same lr/betas/eps/λ, float32. The decay order adds lr·λ·u per step (|u| ≲ lr·|m̂/√v̂|), so
    after T steps |Δθ| ≲ T·lr²·λ·|m̂/√v̂| ≈ 1e-5; the ε-hat placement adds a term of the same size
    in the first steps, and float32 rounding ~1e-6. Parameters are O(1): 1e-4 absolute bounds all
    three, while a wrong update (missing bias correction, decay of lr·λ per step instead of
    lr·λ·θ, ...) moves parameters by > 1e-3 over 1,000 steps (checked below)."""
    ours = _train(lambda p: AdamW(p, lr=LR, weight_decay=WD))
    ref = _train(lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=WD))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)
    # the tolerance is tight enough to see the mistakes one can make
    assert (_train(lambda p: torch.optim.Adam(p, lr=LR, weight_decay=WD)) - ref).abs().max() > 1e-3  # L2, not decoupled
    assert (_train(lambda p: AdamW(p, lr=LR, weight_decay=2 * WD)) - ref).abs().max() > 1e-3


def _adamw_run(lr: float = 3e-2, weight_decay: float = 0.1, eps: float = 1e-8, **path):
    """30 steps over parameters of two dtypes, one of which gets no gradient on some steps (its own
    step count), through a state_dict round trip into a fresh optimizer mid-way (the path is a
    constructor option, not state). Returns the parameters and their step counts."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in [(5, 3), (7,), (2, 2, 2), ()]]
    params.append(torch.nn.Parameter(torch.randn(4, dtype=torch.float64)))
    opt = AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps, **path)
    for step in range(30):
        opt.zero_grad()
        loss = sum((p.double() ** 2).sum() * (i + 1) for i, p in enumerate(params) if not (i == 1 and step % 3 == 0))
        loss.backward()
        opt.step()
        if step == 14:
            state = opt.state_dict()
            opt = AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps, **path)
            opt.load_state_dict(state)
            assert (opt.foreach, opt.fused) == (path.get("foreach", False), path.get("fused", False))
    return [p.detach().clone() for p in params], [float(opt.state[p]["step"]) for p in params]


def test_adamw_foreach_is_bit_identical_to_the_loop():
    """The multi-tensor path runs the same operations in the same order: equal to the bit."""
    (loop, loop_steps), (multi, multi_steps) = _adamw_run(), _adamw_run(foreach=True)
    assert loop_steps == multi_steps == [30.0, 20.0, 30.0, 30.0, 30.0]
    assert all(torch.equal(a, b) for a, b in zip(loop, multi))


@pytest.mark.parametrize("eps", [1e-8, 0.1], ids=["eps=1e-8", "eps=0.1"])
def test_adamw_fused_computes_the_loop_update(eps):
    """torch's fused kernel, given lr(1−lrλ), λ/(1−lrλ) and ε/√(1−β₂ᵗ), is the handout's update: equal
    up to float rounding. With ε = 0.1 the step-dependent ε matters (at step 1 it is 32× ε: a
    fixed ε' moves the parameters by > 1e-3)."""
    (loop, loop_steps), (fused, fused_steps) = _adamw_run(eps=eps), _adamw_run(eps=eps, fused=True)
    assert loop_steps == fused_steps == [30.0, 20.0, 30.0, 30.0, 30.0]
    for a, b in zip(loop, fused):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6 if a.dtype == torch.float32 else 1e-12)
    if eps == 0.1:  # the tolerance sees an ε that is not rescaled with the step
        wrong_eps = _adamw_run(eps=eps * 32, fused=True)[0]  # the first step's ε' for every step
        assert max((a - b).abs().max() for a, b in zip(loop, wrong_eps)) > 1e-3


def test_adamw_fused_takes_the_loop_when_lr_times_decay_reaches_one():
    """At lr·λ ≥ 1 the substitutions divide by zero; the loop's update (θ scaled by 1 − lr·λ ≤ 0) is used."""
    assert all(torch.equal(a, b) for a, b in zip(_adamw_run(lr=2.0, weight_decay=0.5)[0],
                                                  _adamw_run(lr=2.0, weight_decay=0.5, fused=True)[0]))


def test_adamw_rejects_foreach_and_fused_together():
    with pytest.raises(ValueError, match="foreach or fused"):
        AdamW([torch.nn.Parameter(torch.zeros(1))], foreach=True, fused=True)


def test_adamw_state_uses_torch_names_and_round_trips():
    model, x, y = _toy_problem(torch.float32)
    opt = AdamW(model.parameters(), lr=LR)
    ((model(x) - y) ** 2).mean().backward()
    opt.step()
    state = opt.state_dict()["state"][0]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"} and float(state["step"]) == 1.0
    torch.optim.AdamW(model.parameters()).load_state_dict(opt.state_dict())  # loads into torch's


@pytest.mark.parametrize("kwargs", [{"lr": -1}, {"betas": (1.0, 0.9)}, {"eps": -1e-8}, {"weight_decay": -0.1}])
def test_adamw_rejects_invalid_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        AdamW([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_adamw_skips_parameters_without_gradient():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = AdamW([a, b], lr=0.1)
    a.sum().backward()
    opt.step()
    assert torch.equal(b, torch.ones(3)) and not torch.equal(a, torch.ones(3)) and b not in opt.state


# ---------------------------------------------------------------------------------------- SGD toy
def test_sgd_toy_step_size_decays_as_one_over_sqrt_t():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = SGD([p], lr=2.0)
    for _ in range(4):
        p.grad = torch.ones(1)
        opt.step()
    expected = -2.0 * sum(1 / math.sqrt(t + 1) for t in range(4))
    assert p.item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------ cosine schedule
def test_cosine_schedule_warms_up_linearly_then_follows_torch_cosine_then_stays_at_min():
    lr_max, lr_min, warmup, cycle = 1.0, 0.1, 7, 21
    lrs = [get_lr_cosine_schedule(t, lr_max, lr_min, warmup, cycle) for t in range(25)]
    assert lrs[:warmup] == pytest.approx([t / warmup for t in range(warmup)])
    # the cosine part is torch's CosineAnnealingLR over cycle − warmup steps
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr_max)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cycle - warmup, eta_min=lr_min)
    torch_lrs = []
    for _ in range(cycle - warmup + 1):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[warmup : cycle + 1] == pytest.approx(torch_lrs, abs=1e-12)
    assert lrs[warmup] == lr_max and lrs[14] == pytest.approx(0.55) and lrs[cycle] == pytest.approx(lr_min)
    assert lrs[cycle:] == [lr_min] * (25 - cycle)
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1 :]))  # monotone after warm-up


def test_cosine_schedule_without_warmup_starts_at_max():
    assert get_lr_cosine_schedule(0, 3e-4, 3e-5, 0, 100) == 3e-4


# --------------------------------------------------------------------------- gradient clipping
def _grads_pair(scale):
    g = torch.Generator().manual_seed(2)
    shapes = [(4, 3), (5,), (2, 2, 2)]
    a = [torch.nn.Parameter(torch.zeros(s)) for s in shapes] + [torch.nn.Parameter(torch.zeros(3))]
    b = [torch.nn.Parameter(torch.zeros(s)) for s in shapes] + [torch.nn.Parameter(torch.zeros(3))]
    for pa, pb in zip(a[:-1], b[:-1]):  # the last parameter has no gradient
        pa.grad = scale * torch.randn(pa.shape, generator=g)
        pb.grad = pa.grad.clone()
    return a, b


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_gradient_clipping_equals_clip_grad_norm(scale):
    ours, ref = _grads_pair(scale)
    norm = gradient_clipping(ours, max_l2_norm=1.0)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm=1.0)
    torch.testing.assert_close(norm, ref_norm)
    for a, b in zip(ours, ref):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad)
    clipped = math.sqrt(sum(float((p.grad**2).sum()) for p in ours if p.grad is not None))
    assert clipped == pytest.approx(min(float(ref_norm), 1.0), rel=1e-5)


# ------------------------------------------------------------------------------------ get_batch
@pytest.fixture
def token_file(tmp_path):
    def make(n, dtype):
        path = tmp_path / f"tokens-{np.dtype(dtype).name}.bin"
        np.arange(n, dtype=dtype).tofile(path)
        return np.memmap(path, dtype=dtype, mode="r")

    return make


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_get_batch_returns_shifted_int64_windows_from_a_memmap(token_file, dtype):
    data = token_file(1000, dtype)
    x, y = get_batch(data, 8, 16, "cpu", generator=np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    for row_x, row_y in zip(x, y):
        s = int(row_x[0])
        assert torch.equal(row_x, torch.arange(s, s + 16)) and torch.equal(row_y, torch.arange(s + 1, s + 17))


def test_get_batch_reads_only_the_sampled_windows():
    class Tokens:
        """A token store that refuses to be turned into one big array."""

        def __init__(self, n):
            self.n, self.read = n, 0

        def __len__(self):
            return self.n

        def __getitem__(self, idx):
            idx = np.asarray(idx)
            self.read += idx.size
            return idx.astype(np.uint16)

        def __array__(self, *args, **kwargs):
            raise AssertionError("get_batch copied the whole dataset")

    data = Tokens(10**9)
    x, y = get_batch(data, 4, 32, "cpu")
    assert data.read == 4 * 33 and x.shape == (4, 32)


def test_get_batch_starts_are_uniform(token_file):
    """Every start in [0, n − L) is possible, none outside, and counts pass a chi-square test."""
    n, L, draws = 60, 10, 20000
    data = token_file(n, np.uint16)
    x, _ = get_batch(data, draws, L, "cpu", generator=np.random.default_rng(1))
    starts = x[:, 0].numpy()
    counts = np.bincount(starts, minlength=n)
    assert counts[n - L :].sum() == 0  # the last window still has a target
    observed = counts[: n - L]
    assert (observed > 0).all()
    expected = draws / (n - L)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    # 49 degrees of freedom: P(chi2 > 100) ≈ 2e-5 under uniformity; a start range off by one
    # (never sampling the last start, or sampling n − L) gives chi2 > 400.
    assert chi2 < 100


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_load_tokens_maps_npy_and_raw_files_exactly(tmp_path, version):
    ids = np.arange(70_000, dtype=np.uint32)
    with open(tmp_path / "ids.npy", "wb") as f:
        np.lib.format.write_array(f, ids, version=version)
    ids.tofile(tmp_path / "ids.bin")
    for got in (load_tokens(tmp_path / "ids.npy"), load_tokens(tmp_path / "ids.bin", "uint32")):
        assert isinstance(got, np.memmap) and got.dtype == np.uint32 and np.array_equal(got, ids)


@pytest.mark.parametrize("device", ["not-a-device", "cuda:99"])
def test_get_batch_bad_device_raises(token_file, device):
    data = token_file(100, np.uint16)
    with pytest.raises((RuntimeError, AssertionError)):
        get_batch(data, 2, 8, device)
