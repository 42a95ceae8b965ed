"""Optimisers and their helpers: AdamW, the handout's SGD toy, the cosine schedule, clipping."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


def closure_loss(closure: Callable | None):
    """The loss of an optimizer step's `closure` (the torch.optim protocol), evaluated with gradients
    enabled inside the step's `no_grad`; None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class SGD(torch.optim.Optimizer):
    """The handout's toy SGD with a 1/√(t+1) decaying step: θ ← θ − lr/√(t+1) · ∇L."""

    def __init__(self, params, lr: float = 1e-3):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                t = state.get("t", 0)
                p -= group["lr"] / math.sqrt(t + 1) * p.grad
                state["t"] = t + 1
        return loss


class AdamW(torch.optim.Optimizer):
    """AdamW as in the handout (Loshchilov & Hutter, algorithm 2):

        m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
        α_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)
        θ ← θ − α_t·m/(√v + ε);  θ ← θ − lr·λ·θ

    State per parameter: `step` (a float tensor, so checkpoints stay tensor-only), `exp_avg`,
    `exp_avg_sq`, the names torch.optim.AdamW uses.

    How it differs from `torch.optim.AdamW` (same lr, betas, eps, λ), and why both are tiny:

    - order of the decay: torch decays first, θ(1−lrλ) − u; here θ ← (θ − u)(1−lrλ), which is
      torch's result plus lr·λ·u, an O(lr²λ) term per step. Algebraically this is exactly torch's
      update with lr' = lr(1−lrλ) and λ' = λ/(1−lrλ).
    - ε: torch divides by √v̂ + ε with v̂ = v/(1−β₂ᵗ); folding the bias correction into α_t as the
      handout does puts ε/√(1−β₂ᵗ) there instead (the "ε-hat" form): 32ε at step 1 with
      β₂ = 0.999, tending to ε, so it matters only in early steps and for gradients near ε.

    With ε = 0 and lr', λ' the two are equal to float64 rounding (tests/test_training_primitives.py).

    `foreach=True` runs the same element-wise operations, in the same order, on all parameters of
    a device and dtype at once (`torch._foreach_*`): a handful of multi-tensor kernels per step
    instead of ~8 small ones per parameter, which matters on a GPU. The result is bit-identical.

    `fused=True` runs PyTorch's fused AdamW kernel (one pass over each parameter's θ, g, m, v; CPU
    and CUDA) with its hyper-parameters chosen so that it computes this update: torch's kernel is
    θ(1 − lr'λ') − lr'/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε'), which is the handout's update for
    lr' = lr(1−lrλ), λ' = λ/(1−lrλ) and ε' = ε/√(1−β₂ᵗ). Equal up to float rounding (its first
    moment is a `lerp`, and the factors are multiplied in another order), not bit-identical; a
    parameter group with lr·λ ≥ 1 (where those substitutions divide by zero) takes the loop.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, *, foreach: bool = False, fused: bool = False):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"invalid eps {eps} or weight_decay {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        if foreach and fused:
            raise ValueError("choose foreach or fused, not both")
        # How to compute, not state: kept out of state_dict, so resuming never changes them.
        self.foreach, self.fused = foreach, fused

    def _state_of(self, p: torch.Tensor) -> dict:
        if p.grad.is_sparse:
            raise RuntimeError("AdamW does not support sparse gradients")
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            if self.fused and lr * wd < 1:
                self._step_fused(group)
                continue
            if self.foreach:
                self._step_foreach(group)
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state_of(p)
                state["step"] += 1
                t = state["step"].item()
                m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                alpha = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                p.addcdiv_(m, v.sqrt().add_(eps), value=-alpha)
                p.mul_(1 - lr * wd)
        return loss

    def _step_foreach(self, group: dict) -> None:
        """The loop of `step`, one multi-tensor operation per line, per (device, dtype)."""
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        buckets: dict[tuple, list[torch.Tensor]] = {}
        for p in group["params"]:
            if p.grad is not None:
                buckets.setdefault((p.device, p.dtype), []).append(p)
        for params in buckets.values():
            states = [self._state_of(p) for p in params]
            for state in states:
                state["step"] += 1
            ts = [state["step"].item() for state in states]  # per parameter: one may have skipped steps
            ms, vs, gs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [p.grad for p in params]
            torch._foreach_mul_(ms, beta1)
            torch._foreach_add_(ms, gs, alpha=1 - beta1)
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, gs, gs, value=1 - beta2)
            denominators = torch._foreach_sqrt(vs)
            torch._foreach_add_(denominators, eps)
            alphas = [-lr * math.sqrt(1 - beta2**t) / (1 - beta1**t) for t in ts]
            torch._foreach_addcdiv_(params, ms, denominators, alphas)
            torch._foreach_mul_(params, 1 - lr * wd)

    def _step_fused(self, group: dict) -> None:
        """The update of `step` by torch's fused kernel, per (device, dtype, step count): ε' depends
        on the step, and a parameter may have skipped steps."""
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        buckets: dict[tuple, list[torch.Tensor]] = {}
        for p in group["params"]:
            if p.grad is not None:
                state = self._state_of(p)
                state["step"] += 1
                buckets.setdefault((p.device, p.dtype, state["step"].item()), []).append(p)
        decay = 1 - lr * wd
        for (device, _, t), params in buckets.items():
            states = [self.state[p] for p in params]
            steps = [s["step"] if device.type == "cpu" else s["step"].to(device) for s in states]
            torch._fused_adamw_(
                params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                [], steps, lr=lr * decay, beta1=beta1, beta2=beta2, weight_decay=wd / decay,
                eps=eps / math.sqrt(1 - beta2**t), amsgrad=False, maximize=False,
            )


def get_lr_cosine_schedule(it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int, cosine_cycle_iters: int) -> float:
    """Linear warm-up to the max over `warmup_iters`, cosine decay to the min at
    `cosine_cycle_iters`, then the min.

    >>> get_lr_cosine_schedule(0, 1.0, 0.1, 10, 100), get_lr_cosine_schedule(100, 1.0, 0.1, 10, 100)
    (0.0, 0.1)
    """
    if it < warmup_iters:
        return it / warmup_iters * max_learning_rate
    if it <= cosine_cycle_iters:
        progress = (it - warmup_iters) / max(1, cosine_cycle_iters - warmup_iters)
        return min_learning_rate + 0.5 * (1 + math.cos(math.pi * progress)) * (max_learning_rate - min_learning_rate)
    return min_learning_rate


@torch.no_grad()
def gradient_clipping(parameters: Iterable[nn.Parameter], max_l2_norm: float, *, eps: float = 1e-6) -> torch.Tensor:
    """Scale all gradients by max/(‖g‖₂ + eps) in place when their global L2 norm exceeds `max_l2_norm`.

    Parameters without a gradient are skipped. Returns the norm before clipping (for logging).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    scale = max_l2_norm / (norm + eps)
    # "Above the max" means scale < 1, i.e. norm + eps > max: the same test as
    # torch.nn.utils.clip_grad_norm_, so the two agree even at the boundary.
    if scale < 1:
        for g in grads:
            g.mul_(scale.to(g.dtype))
    return norm
