"""Low-rank adapters (LoRA, Hu et al. 2021) for the encoder's trainable blocks, merged away before the model is saved.

Why: on a CPU a full fine-tuning step computes every trainable weight's gradient and updates it.  With the blocks'
Linear weights frozen and a rank-r update ``scale * B @ A`` learned beside each, the weight gradients of the big
products and most of the optimizer's work go; the frozen weights are kept in the training precision, so autocast no
longer casts them at every forward.  The logged encoder is the plain architecture with ``W + scale * B @ A`` folded
into W: inference, every runtime and the ONNX export see an ordinary checkpoint."""
from __future__ import annotations

import math

import torch


class Adapted(torch.nn.Module):
    """A frozen Linear plus its trainable low-rank update: ``x W^T + b + scale * (x A^T) B^T``."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float, dtype: torch.dtype):
        super().__init__()
        base.requires_grad_(False)
        self.base, self.scale = base, alpha / rank
        # the frozen weight as the forward reads it (bf16 training: cast once, not at every step); not saved
        self.register_buffer("frozen", base.weight.detach().to(dtype), persistent=False)
        self.lora_a = torch.nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))  # zero: training starts at the checkpoint
        torch.nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x):
        linear = torch.nn.functional.linear
        return linear(x, self.frozen, self.base.bias) + linear(linear(x, self.lora_a), self.lora_b) * self.scale

    def merged(self) -> torch.nn.Linear:
        """The base Linear with the update folded into its fp32 weight."""
        with torch.no_grad():
            self.base.weight += self.scale * (self.lora_b.float() @ self.lora_a.float())
        return self.base


def add_adapters(blocks, rank: int, alpha: float, dtype: torch.dtype = torch.float32) -> None:
    """Replace every Linear inside `blocks` by an :class:`Adapted` one.  The blocks' other parameters (LayerNorms)
    keep learning: their gradients cost next to nothing."""
    for block in blocks:
        _replace(block, torch.nn.Linear, lambda linear: Adapted(linear, rank, alpha, dtype))


def merge_adapters(model: torch.nn.Module) -> None:
    """Fold every adapter back into a plain Linear, in place."""
    _replace(model, Adapted, Adapted.merged)


def _replace(root: torch.nn.Module, kind: type, make) -> None:
    """Every submodule of `root` that is a `kind` becomes `make(it)` (the replacements are not walked into)."""
    for module in list(root.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, kind):
                setattr(module, name, make(child))
