"""The transformer's runtimes: which one ``auto`` means on this CPU, and the bf16 / int8 versions of a model built
at load time."""

from __future__ import annotations

from pathlib import Path

from newstag_model.encoder import group_rows


RUNTIMES = ("torch", "torch-bf16", "torch-int8", "onnx", "onnx-int8")
AUTO = "auto"  # torch-bf16 where the CPU computes bfloat16 natively, else ONNX fp32 (torch for a model without a graph)


BF16_ROWS = 256  # rows of every bf16 product; see reduced_precision


def reduced_precision(model, runtime: str):
    """`model` with its encoder's Linear layers computed in bfloat16 (``torch-bf16``: fp32 accumulation) or int8
    (``torch-int8``: weights per output channel, activations per token, exact int32 accumulation), built from the fp32
    weights at load time, so no artifact is added (models logged before them lack them: a model carries the
    code it was logged with).  LayerNorm, the residual stream, attention softmax and the head stay fp32
    (MPNet's attention reads bf16 q, k, v in torch's fused kernel, whose sums and softmax are fp32).

    A sentence scores the same in any batch: int8 scales are per row, and every bf16 product has exactly
    ``BF16_ROWS`` rows.  oneDNN's AMX kernels pick their blocking, and so the fp32
    summation order, by the row count: without fixed blocks a probability moved by 2e-2 between batch sizes on an
    AMX Xeon (1e-7 with them, docs/benchmarks.md "Tagging throughput").  256 rows is also a count whose results do
    not change with the thread count there, and small calls (one article) pay little for it: 768-row blocks, faster
    alone for the widening products, gained ~2 % on a 1,200-sentence dump and cost a one-sentence call 72 ms instead
    of 46.
    An intermediate (feed-forward) layer keeps its bf16 output, bias included, for the next product, with an exact
    GELU applied by oneDNN to the product's fp32 sums: no fp32 round trip and no pass of its own over the widest
    activations."""
    import torch

    class ReducedLinear(torch.nn.Module):
        def __init__(self, weight, bias, keep_bf16: bool = False, gelu: bool = False):
            """`gelu`: the (exact) GELU that follows is applied in the product, to its fp32 sums (bf16 output)."""
            super().__init__()
            weight = weight.detach()
            self.bias = None if bias is None else bias.detach()
            self.keep_bf16 = (keep_bf16 or gelu) and runtime == "torch-bf16"
            self.packed = None
            if runtime == "torch-bf16":
                self.weight = weight.to(torch.bfloat16).t()  # (in, out): the layout F.linear hands oneDNN
                if self.keep_bf16 and self.bias is not None:
                    self.bias = self.bias.to(torch.bfloat16)
                if torch.backends.mkldnn.is_available() and (gelu or not self.keep_bf16):
                    # oneDNN's own layout for BF16_ROWS-row products: the same bits as torch.mm, a little faster
                    self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.to(torch.bfloat16), BF16_ROWS)
                    self.post = ("gelu", "none") if gelu else ("none", "")
            else:
                self.scale = (weight.abs().amax(1) / 127).clamp(min=1e-12)
                # (in, out) over column-major storage: the layout torch._int_mm runs fastest on
                self.weight = torch.round(weight / self.scale[:, None]).to(torch.int8).contiguous().t()

        def forward(self, x):
            rows = x.reshape(-1, x.shape[-1])
            if runtime == "torch-bf16":
                out = self._bf16(rows.to(torch.bfloat16))
                if self.keep_bf16:
                    return out.reshape(*x.shape[:-1], out.shape[-1])
                out = out.float()
            else:  # in place where it can be: the quantisation passes cost as much as the int8 product
                peak = torch.linalg.vector_norm(rows, float("inf"), dim=1, keepdim=True).clamp_(min=1e-12)
                quantised = rows.mul(127 / peak).round_().to(torch.int8)
                out = torch._int_mm(quantised, self.weight).float().mul_(peak / 127).mul_(self.scale)
            if self.bias is not None:
                out.add_(self.bias)
            return out.reshape(*x.shape[:-1], out.shape[-1])

        def _bf16(self, rows):
            """The product in blocks of BF16_ROWS rows (the bias added in it where the output stays bf16).  The
            last block ends at the last row and overlaps the one before, whose shared rows it computes to the same
            bits: nothing is padded or copied unless there are fewer rows than one block."""
            n, size = rows.shape[0], BF16_ROWS
            if n < size:
                rows = torch.cat([rows, rows.new_zeros((size - n, rows.shape[1]))])
            out = rows.new_empty((len(rows), self.weight.shape[1]))
            for start in [*range(0, len(rows) - size, size), len(rows) - size]:
                block = slice(start, start + size)
                if self.packed is not None:
                    bias = self.bias if self.keep_bf16 else None
                    out[block] = torch.ops.mkldnn._linear_pointwise(rows[block], self.packed, bias, self.post[0], [],
                                                                     self.post[1])
                elif self.keep_bf16 and self.bias is not None:
                    torch.addmm(self.bias, rows[block], self.weight, out=out[block])
                else:
                    torch.mm(rows[block], self.weight, out=out[block])
            return out[:n]

    class FusedSelfAttention(torch.nn.Module):
        """MPNet's self-attention (the default encoder's; others keep theirs) with q, k and v from one product (the
        input converted once, a 3x wider product) and torch's fused attention on views of its output (bf16 in
        ``torch-bf16``, as the product leaves it; fp32 sums and softmax inside): the eager version's copies of q, k, v
        and the context, and its separate scale, bias and softmax passes, go (~10 % of the model's time)."""

        def __init__(self, attn):
            super().__init__()
            self.heads = attn.num_attention_heads
            self.qkv = ReducedLinear(torch.cat([attn.q.weight, attn.k.weight, attn.v.weight]),
                                     torch.cat([attn.q.bias, attn.k.bias, attn.v.bias]), keep_bf16=True)
            self.o = ReducedLinear(attn.o.weight, attn.o.bias)

        def forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False,
                    groups=None, **_):
            if output_attentions:
                raise ValueError("reduced-precision runtimes do not return attention weights")
            if groups is not None:  # packed rows (mpnet_encoder's forward_packed): one product, attention per group
                context = torch.cat([self.attend(rows, batch, length, bias) for rows, (batch, length, bias)
                                     in group_rows(self.qkv(hidden_states), groups)])
                return (self.o(context),)
            batch, length = hidden_states.shape[:2]
            bias = position_bias
            if attention_mask is not None:  # None when nothing is padded: always, from length_batches
                if attention_mask.dtype == torch.bool:
                    attention_mask = torch.where(attention_mask, 0.0, torch.finfo(torch.float32).min)
                bias = attention_mask if bias is None else bias + attention_mask
            return (self.o(self.attend(self.qkv(hidden_states), batch, length, bias).view(batch, length, -1)),)

        def attend(self, qkv, batch, length, bias):
            """The context rows (batch x length, size) of the q/k/v product's rows of `batch` sentences."""
            q, k, v = qkv.view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            context = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            return context.transpose(1, 2).reshape(batch * length, -1)

    fused = "MPNetSelfAttention"
    for module in list(model.encoder.modules()):
        if type(module).__name__ == fused:  # replaced whole by its parent's turn
            continue
        # BERT-style feed-forward blocks (BERT, RoBERTa, MPNet, ...): `dense`, then `intermediate_act_fn`
        feeds_activation = hasattr(module, "intermediate_act_fn")
        gelu = (feeds_activation and runtime == "torch-bf16" and torch.backends.mkldnn.is_available()
                and exact_gelu(module.intermediate_act_fn))
        for name, child in list(module.named_children()):
            if type(child).__name__ == fused:
                setattr(module, name, FusedSelfAttention(child))
            elif isinstance(child, torch.nn.Linear):
                feeds = feeds_activation and name == "dense"
                setattr(module, name, ReducedLinear(child.weight, child.bias, keep_bf16=feeds, gelu=feeds and gelu))
        if gelu:
            module.intermediate_act_fn = torch.nn.Identity()
    return model


def exact_gelu(activation) -> bool:
    """Whether `activation` is the exact (erf) GELU, as BERT-style encoders name it (transformers' ``GELUActivation``
    or torch's), and oneDNN can fuse it into a bf16 product."""
    import torch

    if isinstance(activation, torch.nn.GELU):
        return activation.approximate == "none"
    return getattr(activation, "act", None) is torch.nn.functional.gelu


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 instructions (AVX-512 BF16 or AMX), where ``torch-bf16`` runs ~1.7x ONNX fp32.
    Elsewhere bf16 is emulated and slower than fp32.  Read from the flags Linux reports, not by importing torch:
    the ONNX fallback starts without it."""
    try:
        with open(cpuinfo, encoding="utf-8") as lines:
            flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_runtime(runtime: str, model_dir: Path) -> str:
    """The runtime that ``auto`` means on this machine for this model; any other runtime is itself."""
    if runtime != AUTO:
        return runtime
    if native_bf16():
        return "torch-bf16"
    return "onnx" if (Path(model_dir) / "model.onnx").exists() else "torch"
