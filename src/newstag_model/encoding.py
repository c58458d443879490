"""What the encoder reads (the target and its context as token ids, or whole articles in chunks) and in which
model calls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from newstag_model.context import quote_marks


def encoder_tokenizer(encoder_dir: Path, max_length: int):
    """The encoder's own ``tokenizer.json`` through `tokenizers` alone, truncating longest first as in training:
    the same ids as transformers' fast tokenizer without importing transformers or torch, which would add seconds
    to every ``newstag tag`` start.  Returns the tokenizer and its separator token."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(encoder_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, strategy="longest_first")
    sep = json.loads((encoder_dir / "tokenizer_config.json").read_text(encoding="utf-8")).get("sep_token")
    return tokenizer, (sep["content"] if isinstance(sep, dict) else sep) or "|"


def length_batches(lengths, size: int):
    """Row indices of each model call: rows of one token length, at most `size` a call.  Nothing is padded, so a
    row is computed exactly as it would be alone, whichever rows share its call (scores do not depend on the
    batch), and no time goes into padding."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    for group in np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1):
        for start in range(0, len(group), size):
            yield group[start:start + size]


def packed_batches(lengths, rows: int):
    """The rows of each packed model call (:func:`mpnet_encoder`'s `forward_packed`) as groups of one token
    length: the sentences in length order, cut after about `rows` tokens."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    cuts = np.searchsorted(np.cumsum(lengths[order]), np.arange(rows, lengths.sum(), rows), side="right")
    for call in np.split(order, np.unique(cuts)):
        if len(call):
            yield np.split(call, np.flatnonzero(np.diff(lengths[call])) + 1)


PACKED_ROWS = 6144  # tokens a packed call (24 blocks of BF16_ROWS)


def encoder_texts(frame: pd.DataFrame) -> list[str]:
    """The sentences as the encoder reads them.  A sentence that continues an open quotation gets the opening mark it
    lacks: it then reads as the quoted sentences that the encoder has seen in quotation marks."""
    return [f'"{t}' if q and quote_marks(t[:1]) != [(0, True)] else t for t, q in zip(frame["text"], frame["quoted"])]


def encoder_inputs(frame: pd.DataFrame, sep: str, contextual: bool) -> tuple[list[str], list[str] | None]:
    """The target sentence as the first segment and its context (title | previous | next) as the second.

    The slots keep their place when empty, so the encoder can tell what comes before the target from what
    follows it; a model without context (window 0, no title) reads single sentences.
    """
    texts = encoder_texts(frame)
    if not contextual:
        return texts, None
    pairs = [f"{t} {sep} {p} {sep} {n}".strip() for t, p, n in zip(frame["title"], frame["prev"], frame["next"])]
    return texts, pairs


TITLE_TOKENS = 32  # of a chunk's title, at most (real titles run ~15)


def article_chunks(frame: pd.DataFrame, tokenizer, limit: int, window: int, sentence_tokens: int):
    """Each article of a :func:`with_context` frame read as few inputs of at most `limit` tokens: (ids, rows) pairs,
    `rows` naming for each token the frame row whose sentence it belongs to (-1: title, context, special tokens).

    A chunk is the tokenizer's pair template around the title and consecutive target sentences: ``<s> title </s></s>
    s_i ... s_j </s>`` (``<s> s_i ... s_j </s>`` without a title).  Every sentence then reads its neighbours for about
    a third of the tokens a (target, title + neighbours) pair costs.  So that the sentences at a chunk's edges read as
    much as the window-`window` pair gives them, the `window` sentences before the first target and after the last
    come along as context, at most half of `sentence_tokens` tokens a side (those nearest the targets); a sentence
    reads at most `sentence_tokens` tokens of its own.  `tokenizer` is a `tokenizers.Tokenizer` without padding.
    """
    single, pair = tokenizer.encode("").ids, tokenizer.encode("", "").ids
    start, middle, end = single[:1], pair[1:-1], single[-1:]
    texts = encoder_texts(frame)
    # an empty sentence still owns a token, so that it gets scores
    tokens = [e.ids[:sentence_tokens] or end for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    edge = sentence_tokens // 2
    order = np.lexsort((frame["position"].to_numpy(), frame["article"].to_numpy()))
    cuts = np.flatnonzero(np.diff(frame["article"].to_numpy()[order])) + 1
    chunks = []
    for rows in np.split(order, cuts) if len(order) else []:
        title = frame["title"].iat[rows[0]]
        head = [*start, *tokenizer.encode(title, add_special_tokens=False).ids[:TITLE_TOKENS], *middle] if title \
            else list(start)
        room = limit - len(head) - len(end)

        def before(k):
            return [t for j in rows[max(0, k - window):k] for t in tokens[j]][-edge:] if window else []

        def after(k):
            return [t for j in rows[k:k + window] for t in tokens[j]][:edge]

        k = 0
        while k < len(rows):
            left, first, right = before(k), tokens[rows[k]][:room], after(k + 1)
            spare = room - len(first)
            kept = min(len(left), max(spare - len(right), spare // 2))  # what does not fit is cut, nearest kept
            body, owner = [*left[len(left) - kept:], *first], [-1] * kept + [int(rows[k])] * len(first)
            k += 1
            while k < len(rows) and len(body) + len(tokens[rows[k]]) + len(after(k + 1)) <= room:
                body += tokens[rows[k]]
                owner += [int(rows[k])] * len(tokens[rows[k]])
                k += 1
            right = after(k)[:room - len(body)]
            chunks.append(([*head, *body, *right, *end], [-1] * len(head) + owner + [-1] * (len(right) + len(end))))
    return chunks
