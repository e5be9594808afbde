"""Dropout on a CPU with masks made from cheap random bits.

PyTorch's CPU dropout draws one Mersenne Twister number per element (`bernoulli_`), which
made dropout 12-17% of a bf16 training step of MiniLM here (profiled), and dropout on
attention sends PyTorch's fused attention to its unfused math path, slower than plain
attention (batch 32: 53 against 60 pairs/s, measured). Here each element takes 16 bits of
a 64-bit draw and is dropped when they fall below p * 2**16: Bernoulli(p) masks to within
2**-17 in p, from the same seeded torch generator (runs stay reproducible, and a resumed
run restores it with the checkpoint), at about a third of the cost (measured). Training
on a CPU takes plain attention with or without dropout: without it, the fused kernels were
slower still (see `_attention`). On a GPU the model keeps PyTorch's own dropout and fused
attention, which are fast there.
"""

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

ATTENTION = "sdpa_fast_cpu_dropout"


def use_fast_cpu_dropout(model):
    """Switch `model`'s dropout layers (p > 0) to the fast masks; False where it has none."""
    switched = False
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout and child.p > 0:
                setattr(parent, name, FastDropout(child.p, child.inplace).train(child.training))
                switched = True
    return switched


def use_plain_attention(model):
    """Where `model` uses PyTorch's fused (sdpa) attention, switch it to plain attention with
    the fast masks while training on a CPU, and to sdpa otherwise; False for other attention.
    A saved config names no attention, so any program loads the model as before."""
    if model.config._attn_implementation != "sdpa":
        return False
    AttentionInterface.register(ATTENTION, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)  # the same boolean masks as sdpa
    model.set_attn_implementation(ATTENTION)
    return True


class FastDropout(nn.Dropout):
    def forward(self, inputs):
        if not self.training or self.p == 0 or inputs.device.type != "cpu":
            return super().forward(inputs)
        return cpu_dropout(inputs, self.p)


def cpu_dropout(inputs, p):
    """Zero each element with probability p, scale the rest by 1 / (1 - p)."""
    if p >= 1:
        return inputs * 0
    bits = torch.empty((inputs.numel() + 3) // 4, dtype=torch.int64).random_(-2**63, None)
    keep = bits.view(torch.int16)[:inputs.numel()].view(inputs.shape) >= round(p * 2**16) - 2**15
    return _KeepAndScale.apply(inputs, keep, 1 / (1 - p))


class _KeepAndScale(torch.autograd.Function):
    # Saves the boolean mask (1 byte per element) rather than a scaled copy in the inputs' dtype.
    @staticmethod
    def forward(ctx, inputs, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.mul(inputs, keep).mul_(scale)  # measured faster than torch.where

    @staticmethod
    def backward(ctx, grad_output):
        (keep,) = ctx.saved_tensors
        return torch.mul(grad_output, keep).mul_(ctx.scale), None, None


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Transformers' sdpa attention, except when an encoder trains on a CPU: then plain
    attention, with the fast masks for attention dropout. PyTorch's fused CPU kernels take no
    dropout, and even without dropout they trained slower than plain attention here (bf16,
    batches of 16, bare loop: 50 and 54 against 75 pairs/s). Causal (decoder) attention,
    whose mask sdpa may leave implicit, stays sdpa's."""
    causal = kwargs.get("is_causal") or getattr(module, "is_causal", True)
    if not module.training or query.device.type != "cpu" or causal:
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:  # boolean, True where a token may be attended to
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    weights = nn.functional.softmax(scores, dim=-1)
    if dropout > 0:
        weights = cpu_dropout(weights, dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None
