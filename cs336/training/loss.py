"""Cross-entropy of next-token predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


def cross_entropy(
    logits: Float[Tensor, "... vocab"], targets: Int[Tensor, "..."], *, fused: bool = False
) -> Float[Tensor, ""]:
    """Mean of −log softmax(logits)[target] over every leading dim.

    Uses log-sum-exp with the max subtracted, so logits of any magnitude stay finite:
    −log p_t = logsumexp(o) − o_t = (m + log Σ exp(o − m)) − o_t.
    `fused=True` computes the same with PyTorch's kernel (one pass less over the logits).
    """
    if fused:
        return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten())
    return token_cross_entropy(logits.float(), targets).mean()


def token_cross_entropy(logits: Float[Tensor, "... vocab"], targets: Int[Tensor, "..."]) -> Float[Tensor, "..."]:
    """−log softmax(logits)[target] at every position, in the logits' dtype (`cross_entropy`'s terms)."""
    m = logits.amax(dim=-1, keepdim=True).detach()  # the shift cancels, so it needs no gradient (2x faster backward)
    # exp in place on the shifted copy: one (rows, vocab) tensor fewer, each of which is fresh memory
    # from the OS (a page fault per 4 KiB) when larger than glibc's largest reused block, 32 MiB
    lse = m.squeeze(-1) + torch.log((logits - m).exp_().sum(dim=-1))
    target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return lse - target_logit


def next_token_loss(model, token_ids: Int[Tensor, "... seq"], targets: Int[Tensor, "... seq"], *, forward=None) -> Float[Tensor, ""]:
    """Mean cross-entropy of a `TransformerLM`'s next-token predictions, as the trainer computes it.

    `forward` is what to call for the model's forward pass (default: the model; the trainer passes
    its DistributedDataParallel or compiled wrapper). A fused model outside autocast takes its final
    hidden states and applies the LM head inside the loss (`linear_cross_entropy`); otherwise the
    logits go to `cross_entropy`, PyTorch's kernel for a fused model.
    """
    forward = model if forward is None else forward
    if model.fused and not torch.is_autocast_enabled(token_ids.device.type):
        hidden = forward(token_ids, head=False)
        return linear_cross_entropy(hidden, model.lm_head.weight, targets, softcap=model.logit_softcap)
    return cross_entropy(forward(token_ids), targets, fused=model.fused)


def linear_cross_entropy(
    hidden: Float[Tensor, "... d"], weight: Float[Tensor, "vocab d"], targets: Int[Tensor, "..."],
    *, softcap: float | None = None, chunk_size: int = 256,
) -> Float[Tensor, ""]:
    """`cross_entropy(logits, targets)` for logits = hidden·weightᵀ (soft-capped as
    `cap·tanh(logits/cap)` when `softcap` is set), without ever holding all the logits.

    The LM head and the loss in one pass over `chunk_size` rows at a time: each chunk's logits
    become log-probabilities, the loss, and at once the gradient of the mean loss with respect to
    them (softmax − one-hot, over the number of rows), which two matrix products turn into the
    gradients of `hidden` and `weight`; backward only scales those by the incoming gradient. The
    products are those of the unfused head (forward, and the two of its backward), so nothing is
    recomputed; what is saved is the materialised (rows, vocab) logits, their gradient and the
    separate passes of log-softmax, its backward and the one-hot scatter. In the inputs' dtype;
    the loss is summed in float64. Backward runs once per forward (the gradients are handed over,
    not copied).
    """
    return _LinearCrossEntropy.apply(hidden.flatten(0, -2), weight, targets.flatten(), softcap, chunk_size)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, softcap: float | None, chunk_size: int) -> Tensor:
        n = len(hidden)
        want_grad = any(ctx.needs_input_grad[:2])
        grad_hidden = torch.empty_like(hidden) if want_grad else None
        grad_weight = torch.empty_like(weight) if want_grad else None  # the first chunk overwrites it
        total = torch.zeros((), dtype=torch.float64, device=hidden.device)
        for start in range(0, n, chunk_size):
            h, t = hidden[start : start + chunk_size], targets[start : start + chunk_size]
            rows = torch.arange(len(t), device=t.device)
            logits = h @ weight.T
            if softcap is not None:
                capped = torch.tanh(logits.div_(softcap))  # kept: the cap's derivative is 1 − tanh²
                logits = capped * softcap
            log_p = torch.log_softmax(logits, dim=-1)
            total -= log_p[rows, t].sum(dtype=torch.float64)
            if not want_grad:
                continue
            d_logits = log_p.exp_()  # softmax; minus the one-hot below: n·∂loss/∂logits
            d_logits[rows, t] -= 1
            if softcap is not None:
                d_logits *= 1 - capped.square_()
            torch.mm(d_logits, weight, out=grad_hidden[start : start + chunk_size])
            grad_weight.addmm_(d_logits.T, h, beta=0 if start == 0 else 1, alpha=1 / n)  # beta 0: not read
        if want_grad:
            ctx.save_for_backward(grad_hidden.mul_(1 / n), grad_weight)
        return (total / n).to(hidden.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor):
        if getattr(ctx, "handed_over", False):  # with retain_graph: the buffers may since have been clipped or zeroed
            raise RuntimeError("linear_cross_entropy: its backward runs once per forward")
        ctx.handed_over = True
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_loss.device.type == "cpu" and grad_loss.item() == 1.0:  # the usual case: a pass over the head saved
            return grad_hidden, grad_weight, None, None, None
        return grad_hidden.mul_(grad_loss), grad_weight.mul_(grad_loss), None, None, None
