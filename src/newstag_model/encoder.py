"""The transformer as a torch module: an encoder, pooling and a linear head; and MPNet in plain torch for the
reduced runtimes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace


def encoder_classifier(encoder, num_labels: int, pooling: str, dropout: float = 0.1,
                       sep_token_id: int | None = None, chunked: bool = False):
    """Encoder + pooling + linear head, as a torch module.  Pooling: ``cls`` (the first token), ``mean`` (every
    token the attention mask keeps) or ``target`` (the mean over the target sentence, the first segment through its
    separator `sep_token_id`: its context shapes it through attention, not as a share of the average).

    `chunked` (inputs of :func:`article_chunks`): given `spans` (batch, tokens: the chunk's sentence number of each
    token, -1 for none), the logits (batch, sentences, labels) of each sentence's mean token; without them, every
    token's logits (batch, tokens, labels), whose mean over a sentence's tokens is that sentence's logits (the head is
    affine): so every runtime, ONNX included, runs a plain graph and the sentences are pooled outside it."""
    import torch

    class EncoderClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.pooling = pooling
            self.sep_token_id = sep_token_id
            self.dropout = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels)
            self.chunked = chunked

        def forward(self, input_ids, attention_mask, spans=None, labels=None):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.chunked and spans is None:
                return {"logits": self.head(hidden)}
            pooled = span_means(hidden, spans) if self.chunked else self.pool(hidden, input_ids, attention_mask)
            return {"logits": self.head(self.dropout(pooled))}

        def forward_packed(self, groups):
            """Logits of unpadded groups of one length each, in order, through the encoder's packed pass
            (:func:`mpnet_encoder`): scored as `forward` scores each group alone."""
            hidden = self.encoder.forward_packed(groups)
            if self.chunked:  # every token's logits, as `forward` gives them without spans
                return self.head(hidden)
            pooled = [self.pool(rows.view(*ids.shape, -1), ids, torch.ones_like(ids))
                      for (rows, _), ids in zip(group_rows(hidden, [g.shape for g in groups]), groups)]
            return self.head(torch.cat(pooled))

        def pool(self, hidden, input_ids, attention_mask):
            if self.pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask
            if self.pooling == "target":  # a row without a separator is all target
                sep = input_ids == self.sep_token_id
                end = torch.where(sep.any(1), sep.int().argmax(1), input_ids.shape[1])
                mask = mask * (torch.arange(input_ids.shape[1], device=input_ids.device)[None] <= end[:, None])
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return EncoderClassifier()


def span_means(hidden, spans):
    """(batch, sentences, size): the mean hidden state of each chunk's sentences (`spans`: each token's sentence
    number in its chunk, -1 for none); a chunk with fewer sentences than the batch's most gets zeros for the rest."""
    import torch

    onehot = (spans[..., None] == torch.arange(int(spans.max()) + 1, device=spans.device)).to(hidden.dtype)
    return torch.einsum("bts,bth->bsh", onehot, hidden) / onehot.sum(1)[..., None].clamp(min=1)


def load_encoder_classifier(model_dir: Path, meta: dict, plain: bool = False):
    """The logged classifier; `plain`: an MPNet encoder as :func:`mpnet_encoder` builds it, not transformers'."""
    from safetensors.torch import load_file

    config = json.loads((model_dir / "encoder" / "config.json").read_text(encoding="utf-8"))
    if plain and config.get("model_type") == "mpnet":
        encoder = mpnet_encoder(model_dir / "encoder")
    else:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a loading bar per model load drowns the tagger's own progress
        encoder = AutoModel.from_pretrained(model_dir / "encoder", local_files_only=True)
    model = encoder_classifier(encoder, len(meta["labels"]), meta["pooling"], sep_token_id=meta.get("sep_token_id"),
                               chunked=bool((meta.get("context") or {}).get("chunk_tokens")))
    model.head.load_state_dict(load_file(model_dir / "head.safetensors"))
    return model.eval()


def mpnet_encoder(encoder_dir: Path):
    """An MPNet encoder (all-mpnet-base-v2's architecture, the default) in plain torch from its logged weights, for
    the reduced runtimes: transformers' ``MPNetModel`` arithmetic (tested against it) without importing
    transformers (~1.7 s of a one-article ``newstag tag``, docs/benchmarks.md "Tagging throughput").  Inference
    only.  Module names are transformers', so the weights load as they are and :func:`reduced_precision` finds the
    same layers."""
    import math

    import torch
    from safetensors.torch import load_file
    from torch import nn

    config = SimpleNamespace(**json.loads((encoder_dir / "config.json").read_text(encoding="utf-8")))
    size, eps = config.hidden_size, config.layer_norm_eps

    class MPNetSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.num_attention_heads = config.num_attention_heads
            self.q, self.k, self.v, self.o = (nn.Linear(size, size) for _ in range(4))

        def forward(self, hidden, attention_mask, position_bias, groups=None):
            if groups is not None:
                return (torch.cat([self(rows.view(batch, length, -1), None, bias)[0].reshape(len(rows), -1)
                                   for rows, (batch, length, bias) in group_rows(hidden, groups)]),)
            batch, length = hidden.shape[:2]
            q, k, v = (f(hidden).view(batch, length, self.num_attention_heads, -1).transpose(1, 2)
                       for f in (self.q, self.k, self.v))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + position_bias
            if attention_mask is not None:
                scores = scores + attention_mask
            context = torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(batch, length, size)
            return (self.o(context),)

    class Block(nn.Module):  # names as in transformers: attention.attn, attention.LayerNorm, intermediate, output
        def __init__(self, **children):
            super().__init__()
            for name, child in children.items():
                setattr(self, name, child)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Block(attn=MPNetSelfAttention(), LayerNorm=nn.LayerNorm(size, eps=eps))
            self.intermediate = Block(dense=nn.Linear(size, config.intermediate_size), intermediate_act_fn=nn.GELU())
            self.output = Block(dense=nn.Linear(config.intermediate_size, size), LayerNorm=nn.LayerNorm(size, eps=eps))

        def forward(self, hidden, attention_mask, position_bias, groups=None):
            attended = self.attention.LayerNorm(
                self.attention.attn(hidden, attention_mask, position_bias, groups=groups)[0] + hidden)
            wide = self.intermediate.intermediate_act_fn(self.intermediate.dense(attended))
            return self.output.LayerNorm(self.output.dense(wide) + attended)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = config
            self.embeddings = Block(word_embeddings=nn.Embedding(config.vocab_size, size),
                                    position_embeddings=nn.Embedding(config.max_position_embeddings, size),
                                    LayerNorm=nn.LayerNorm(size, eps=eps))
            self.encoder = Block(layer=nn.ModuleList(Layer() for _ in range(config.num_hidden_layers)),
                                 relative_attention_bias=nn.Embedding(config.relative_attention_num_buckets,
                                                                      config.num_attention_heads))

        def forward(self, input_ids, attention_mask):
            kept = (input_ids != 1).long()  # MPNet's padding index: positions count real tokens from 2
            hidden = self.embeddings.word_embeddings(input_ids) + self.embeddings.position_embeddings(
                kept.cumsum(1) * kept + 1)
            hidden = self.embeddings.LayerNorm(hidden)
            mask = None
            if not bool(attention_mask.all()):
                mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
            bias = self.position_bias(input_ids.shape[1])
            for layer in self.encoder.layer:
                hidden = layer(hidden, mask, bias)
            return SimpleNamespace(last_hidden_state=hidden)

        def forward_packed(self, groups):
            """Unpadded rows of several lengths in one pass: `groups` are (sentences, tokens) id tensors of one
            length each; the hidden states come back as one (all tokens, size) tensor, the groups' rows in order.
            Every product then runs on all the tokens at once (full blocks, no padding), attention per group."""
            ids = torch.cat([g.reshape(-1) for g in groups])
            positions = torch.cat([torch.arange(2, g.shape[1] + 2).repeat(g.shape[0]) for g in groups])
            hidden = self.embeddings.LayerNorm(self.embeddings.word_embeddings(ids)
                                               + self.embeddings.position_embeddings(positions))
            biases = {length: self.position_bias(length) for length in {g.shape[1] for g in groups}}
            shapes = [(g.shape[0], g.shape[1], biases[g.shape[1]]) for g in groups]
            for layer in self.encoder.layer:
                hidden = layer(hidden, None, None, groups=shapes)
            return hidden

        def position_bias(self, length):
            offset = torch.arange(length)[None, :] - torch.arange(length)[:, None]
            return self.encoder.relative_attention_bias(bucket(offset)).permute(2, 0, 1)[None]

    def bucket(offset, buckets=32, max_distance=128):  # transformers' relative_position_bucket (32 whatever the config)
        n = -offset
        half = buckets // 2
        exact = half // 2
        ret = (n < 0).long() * half
        n = n.abs()
        large = exact + (torch.log(n.float() / exact) / math.log(max_distance / exact) * (half - exact)).long()
        return ret + torch.where(n < exact, n, large.clamp(max=half - 1))

    with torch.device("meta"):  # no random initialisation: every weight comes from the file
        encoder = Encoder()
    weights = {k: v for k, v in load_file(encoder_dir / "model.safetensors").items() if not k.startswith("pooler.")}
    encoder.load_state_dict(weights, assign=True)
    return encoder.eval()


def group_rows(rows, groups):
    """(the group's slice of `rows`, the group) for each group of a packed pass, (sentences, tokens, ...) first."""
    start = 0
    for group in groups:
        end = start + group[0] * group[1]
        yield rows[start:end], group
        start = end
