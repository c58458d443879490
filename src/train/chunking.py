"""Training data for a model that reads articles in chunks (``context.chunk_tokens``): one example a chunk, with
the labels of the sentences it scores.  The chunks themselves are built by
``newstag_model.encoding.article_chunks``, the function inference runs, so training reads exactly what the logged
model will."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer

from newstag_model.context import with_context
from newstag_model.encoding import article_chunks


def chunk_columns(tokenizer, frame, labels: list[int], context: dict, max_length: int,
                  weights: list[float] | None = None) -> dict[str, list]:
    """Dataset columns: each chunk's ids and mask, each token's sentence number in its chunk (`spans`, -1 for none),
    and its sentences' `labels` (and `weight`) in that order.  `tokenizer` is the transformers tokenizer; the chunks
    use its `tokenizers` backend as ``newstag_model.encoding.encoder_tokenizer`` loads it at inference (no padding,
    truncation at `max_length`)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.enable_truncation(max_length)
    columns = {"input_ids": [], "attention_mask": [], "spans": [], "labels": [],
               **({"weight": []} if weights is not None else {})}
    framed = with_context(frame, **context)
    for ids, owners in article_chunks(framed, backend, context["chunk_tokens"], context["window"],
                                      max_length):
        rows = list(dict.fromkeys(r for r in owners if r >= 0))
        number = {r: k for k, r in enumerate(rows)}
        columns["input_ids"].append(ids)
        columns["attention_mask"].append([1] * len(ids))
        columns["spans"].append([number.get(r, -1) for r in owners])
        columns["labels"].append([labels[r] for r in rows])
        if weights is not None:
            columns["weight"].append([weights[r] for r in rows])
    return columns


def collator(pad_token_id: int):
    """Pads a batch of chunks (:func:`chunk_columns`): ids with the pad token, the mask and `spans` with 0 / -1,
    and the per-sentence `labels` and `weight` with -100 / 0, which the loss leaves out."""
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "spans": -1, "labels": -100, "weight": 0.0}

    def collate(features):
        batch = {}
        for key in features[0]:
            width = max(len(f[key]) for f in features)
            batch[key] = torch.tensor([list(f[key]) + [fill[key]] * (width - len(f[key])) for f in features])
        return batch

    return collate
