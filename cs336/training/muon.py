"""Muon: momentum orthogonalised by a Newton–Schulz iteration, for the hidden weight matrices of a
network; and `MuonAdamW`, the split the speed-run recipe uses: Muon for the Transformer blocks'
matrices, AdamW for the embeddings, the LM head and the norm gains.

One Muon step for a weight matrix W (m × n) with gradient G (Jordan et al. 2024, "Muon: an
optimizer for hidden layers in neural networks"; the update of `torch.optim.Muon`):

    B ← μ·B + (1−μ)·G                          momentum, an exponential average
    M ← (1−μ)·G + μ·B  (Nesterov)   or  M ← B   Nesterov looks one average ahead
    O ← NS(M) ≈ U·Vᵀ  for M = U·S·Vᵀ            every singular value pushed towards 1
    W ← W·(1 − lr·λ) − lr·r(m, n)·O             decoupled decay first, then the step

Why orthogonalise: the momentum of a hidden layer's gradient is nearly low-rank (a few large
singular values); O moves W by the same amount along every direction M points in, so rare
directions learn as fast as common ones. Only matrices have singular values, and of those only the
hidden layers' are meant: the embedding (a lookup table) and the LM head go to AdamW with the norm
gains and scalars, which works better in practice (Jordan).

r(m, n) scales the step by the matrix's shape (`adjust_lr_fn`):
- None or "original" (Jordan): √max(1, m/n). O's entries have RMS ≈ 1/√max(m, n); the factor
  makes that 1/√n (n: the input dimension) for every shape, so a tall matrix moves as far as a
  square one;
- "match_rms_adamw" (Liu et al. 2025, "Muon is scalable for LLM training"): 0.2·√max(m, n), which
  gives the update the RMS of a typical AdamW update (≈ 0.2), so AdamW's lr and λ carry over.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from jaxtyping import Float
from torch import Tensor, nn

from cs336.training.optim import AdamW, closure_loss

# Keller Jordan's quintic, chosen for a steep slope at 0 while 5 steps still keep every singular
# value of G/‖G‖_F in a band around 1 (see `newton_schulz`). torch.optim.Muon's defaults.
NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
NS_DTYPES = (torch.bfloat16, torch.float32, torch.float64)


def newton_schulz(
    G: Float[Tensor, "m n"],
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
) -> Float[Tensor, "m n"]:
    """Push every singular value of G towards 1 and keep its singular vectors: ≈ U·Vᵀ for G = U·S·Vᵀ.

    X starts as G/‖G‖_F, so every singular value lies in [0, 1]. With A = X·Xᵀ = U·S²·Uᵀ, one step

        X ← a·X + (b·A + c·A²)·X  =  U·p(S)·Vᵀ,   p(x) = a·x + b·x³ + c·x⁵,

    applies the odd polynomial p to all singular values at once, with matrix products only. p is
    steep at 0 (a = 3.4445), so small singular values grow fast, at the price of not converging to
    exactly 1: after 5 steps a singular value that started at x ≥ 0.0015 (relative to ‖G‖_F) ends
    in [0.68, 1.21]. That is all Muon needs, and far cheaper than an SVD.

    A tall G (m > n) is transposed first, so that A is the smaller Gram matrix, min(m, n)². The
    iteration runs in `dtype` (bfloat16 by default, as torch.optim.Muon) and returns that dtype;
    each `addmm` rounds its fused result once: in bfloat16 the result is then ≈ 1.2% (relative,
    Frobenius) from the exact polynomial, against ≈ 2.5% when every product and sum is rounded.

    >>> newton_schulz(torch.tensor([[3.0, 0.0], [0.0, 4.0]]), dtype=torch.float32)  # 0.6, 0.8 of ‖G‖_F
    tensor([[0.7229, 0.0000],
            [0.0000, 1.1192]])
    """
    a, b, c = coefficients
    X = G.to(dtype)
    tall = X.size(0) > X.size(1)
    if tall:
        X = X.T
    X = X / X.norm().clamp(min=eps)  # spectral norm ≤ Frobenius norm = 1
    for _ in range(steps):
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)  # b·A + c·A²
        X = torch.addmm(X, B, X, beta=a)  # a·X + B·X
    return X.T if tall else X


def adjusted_lr(lr: float, shape: torch.Size, adjust_lr_fn: str | None = None) -> float:
    """The rate Muon steps a matrix of `shape` at: lr·r(m, n) (the module docstring says why).

    >>> adjusted_lr(0.02, (1344, 512)), adjusted_lr(0.02, (512, 1344)), adjusted_lr(1e-3, (512, 1344), "match_rms_adamw")
    (0.032403703492039304, 0.02, 0.007332121111929344)
    """
    rows, cols = shape
    if adjust_lr_fn == "match_rms_adamw":
        return lr * (0.2 * math.sqrt(max(rows, cols)))
    return lr * math.sqrt(max(1, rows / cols))


class Muon(torch.optim.Optimizer):
    """Muon (module docstring) with the arguments and the update of `torch.optim.Muon`.

    State per parameter: `momentum_buffer` (B), the name torch.optim.Muon uses, so state dicts
    load into either. Parameters must be 2-D; the decay uses the unadjusted lr (lr·λ), the step
    the adjusted one, as in torch.

    `ns_dtype` is the dtype of the Newton–Schulz iteration: bfloat16 (torch's choice; the update is
    then equal to torch.optim.Muon's bit for bit, except for bfloat16 parameters without Nesterov,
    whose momentum buffer torch 2.13 normalises in place, against its own algorithm), float32
    (≈ 1e-6 from the exact polynomial instead of ≈ 1e-2) or float64. Which is faster depends on the
    CPU and the size: on a CPU with bfloat16 matrix units float32 was 1.5× faster for a d_model = 96
    model and 4.5× slower for d_model = 512 (benchmarks/README.md, "Muon"). Like AdamW's `foreach`
    it says how to compute, not what to remember: it is kept out of state_dict.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        ns_dtype: torch.dtype = torch.bfloat16,
    ):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if momentum < 0 or weight_decay < 0 or eps < 0:
            raise ValueError(f"invalid momentum {momentum}, weight_decay {weight_decay} or eps {eps}")
        if len(ns_coefficients) != 3 or not 0 <= ns_steps < 100:
            raise ValueError(f"invalid ns_coefficients {ns_coefficients} (need 3) or ns_steps {ns_steps} (need 0..99)")
        if adjust_lr_fn not in ADJUST_LR_FNS:
            raise ValueError(f"invalid adjust_lr_fn {adjust_lr_fn!r}: one of {ADJUST_LR_FNS}")
        if ns_dtype not in NS_DTYPES:
            raise ValueError(f"invalid ns_dtype {ns_dtype}: one of {NS_DTYPES}")
        defaults = {
            "lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
            "ns_coefficients": tuple(ns_coefficients), "eps": eps, "ns_steps": ns_steps, "adjust_lr_fn": adjust_lr_fn,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        f"Muon updates 2-D weight matrices only, got a parameter of shape {tuple(p.shape)}; "
                        "use AdamW for embeddings, the LM head, norm gains and scalars "
                        "(cs336.runs.split_hidden_matrices splits a model this way)"
                    )
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            self.step_group(group, group["lr"])
        return loss

    @torch.no_grad()
    def step_group(self, group: dict, lr: float) -> None:
        """One step of the parameters of `group` at learning rate `lr` (`step` passes the group's
        own; MuonAdamW passes it scaled to Muon's peak)."""
        mu, wd = group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            if g.is_sparse:
                raise RuntimeError("Muon does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(g, memory_format=torch.preserve_format)
            B = state["momentum_buffer"]
            B.lerp_(g, 1 - mu)  # B ← μ·B + (1−μ)·G
            M = g.lerp(B, mu) if group["nesterov"] else B  # (1−μ)·G + μ·B
            O = newton_schulz(M, group["ns_steps"], group["ns_coefficients"], group["eps"], self.ns_dtype)
            p.mul_(1 - lr * wd)
            p.add_(O, alpha=-adjusted_lr(lr, p.shape, group["adjust_lr_fn"]))


class MuonAdamW:
    """Muon on `muon_params` and AdamW on `adamw_params`, stepped as one optimizer.

    It has what the trainer and the checkpoints use of a `torch.optim.Optimizer`: `param_groups`
    (Muon's, then AdamW's; the same dicts, so writing them reaches both), `step`, `zero_grad`,
    `state_dict` and `load_state_dict` (a dict holding both state dicts).

    The learning rate: every group's "lr" is in AdamW's units, as a schedule that peaks at `lr`
    writes it each step. Muon wants a larger rate, so its groups carry "lr_scale" = muon_lr / lr
    and step at "lr" · "lr_scale": Muon follows the same warm-up and decay, scaled to its own peak.
    Like the other hyper-parameters of a group, "lr_scale" comes back from a checkpoint.
    """

    def __init__(
        self,
        muon_params: Iterable[nn.Parameter],
        adamw_params: Iterable[nn.Parameter] | Iterable[dict],
        *,
        lr: float,
        muon_lr: float,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        muon_momentum: float = 0.95,
        muon_weight_decay: float = 0.0,
        adjust_lr_fn: str | None = None,
        ns_dtype: torch.dtype = torch.bfloat16,
        foreach: bool = False,
        fused: bool = False,
    ):
        if lr <= 0:
            raise ValueError(f"lr={lr} must be positive: Muon's rate is set as a multiple of it")
        self.muon = Muon(muon_params, lr=lr, weight_decay=muon_weight_decay, momentum=muon_momentum,
                         adjust_lr_fn=adjust_lr_fn, ns_dtype=ns_dtype)
        for group in self.muon.param_groups:
            group["lr_scale"] = muon_lr / lr
        self.adamw = AdamW(adamw_params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach, fused=fused)

    @property
    def param_groups(self) -> list[dict]:
        return self.muon.param_groups + self.adamw.param_groups

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure_loss(closure)
        for group in self.muon.param_groups:
            self.muon.step_group(group, group["lr"] * group["lr_scale"])
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != {"muon", "adamw"}:
            raise ValueError("not a MuonAdamW state dict: expected the keys 'muon' and 'adamw'")
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
