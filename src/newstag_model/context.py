"""A sentence's place in its article: its neighbours, its title and whether it continues an open quotation."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from newstag_model.schema import as_frame


def _clean(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()


def _nearest(text: str, words: int) -> str:
    """The first `words` words of `text`, the last ``-words`` where negative, all of it where 0."""
    if not words:
        return text
    kept = text.split()
    return " ".join(kept[:words] if words > 0 else kept[words:])


def article_rows(frame: pd.DataFrame) -> list[list[int]]:
    """Row numbers of each article in reading order, articles in the order of their first row.  Rows that share an
    `article_id` are one article, ordered by `sentence_index` (else by input order); a row without one stands alone."""
    n = len(frame)
    if "article_id" not in frame.columns:
        return [[i] for i in range(n)]
    ids = [_clean(a) for a in frame["article_id"].tolist()]
    order = frame["sentence_index"].tolist() if "sentence_index" in frame.columns else [None] * n
    groups: dict[str, list[int]] = {}
    for i, aid in enumerate(ids):
        groups.setdefault(aid or f"\0{i}", []).append(i)  # "\0": no article id a file can hold
    for rows in groups.values():
        rows.sort(key=lambda i: (pd.isna(order[i]), order[i] if not pd.isna(order[i]) else 0, i))
    return list(groups.values())


def with_context(inputs, window: int = 0, title: bool = False, quotes: bool = False, quote_spans: bool = False,
                 voice: bool = False, neighbour_words: int = 0, chunk_tokens: int = 0) -> pd.DataFrame:
    """The model's input, one row per input row in input order: `text`, `prev`, `next`, `title`, `quoted`, `span`,
    `voice`, `article`, `position`.

    Articles are :func:`article_rows`: a row's article number and its place in it are `article` and `position`.
    `prev`/`next` join up to `window` neighbours, cut to the `neighbour_words` words nearest the target where that is
    not 0, and stay empty with `chunk_tokens` (the chunks carry the neighbours, :func:`article_chunks`); `title` is
    the row's title when asked for and given; `quoted` is ``"quoted"`` where `quotes` is asked for and the sentence
    starts inside a quotation that an earlier sentence opened (:func:`quoted_starts`), else empty: a token, so that
    the baseline reads it as one more TF-IDF block.  `span` is the row number of the first sentence of the quotation
    a row continues where `quote_spans` is asked for, else the row's own number (:func:`pool_quote_spans`).  `voice`
    is the text outside quotation marks where asked for (:func:`own_voice`).
    """
    frame = as_frame(inputs)
    texts = [_clean(t) for t in frame["text"].tolist()]
    n = len(texts)
    prev, nxt, starts, span = [""] * n, [""] * n, [False] * n, list(range(n))
    article, position = [0] * n, [0] * n
    for number, rows in enumerate(article_rows(frame)):
        for k, i in enumerate(rows):
            article[i], position[i] = number, k
            if window and not chunk_tokens:
                prev[i] = _nearest(" ".join(texts[j] for j in rows[max(0, k - window):k]), -neighbour_words)
                nxt[i] = _nearest(" ".join(texts[j] for j in rows[k + 1:k + 1 + window]), neighbour_words)
        if (quotes or quote_spans or voice) and len(rows) > 1:
            for k, inside in enumerate(quoted_starts([texts[i] for i in rows])):
                starts[rows[k]] = inside
                if inside and quote_spans:  # never the article's first sentence, so rows[k - 1] exists
                    span[rows[k]] = span[rows[k - 1]]
    titles = [_clean(t) for t in frame["title"].tolist()] if title and "title" in frame.columns else [""] * n
    quoted = [QUOTED if quotes and inside else "" for inside in starts]
    own = [own_voice(t, inside) for t, inside in zip(texts, starts)] if voice else [""] * n
    return pd.DataFrame({"text": texts, "prev": prev, "next": nxt, "title": titles, "quoted": quoted, "span": span,
                         "voice": own, "article": article, "position": position})


QUOTED = "quoted"
# A quotation left open runs at most this many sentences without a quote mark: a stray mark does not turn the
# rest of an article into speech (on the real corpus, 96.5 % of the unmarked sentences so found are quotes or
# responses at 3, 95.6 % with no limit).
MAX_UNMARKED = 3


_MARKS = re.compile("[\"\u201c\u201d\u00ab\u00bb]")


def quote_marks(text: str) -> list[tuple[int, bool]]:
    """Each quotation mark of `text` in order, as (position, opens).  Curly marks and guillemets say which; a
    straight one opens at the start, after a space or an opening bracket or dash, and closes elsewhere."""
    marks = []
    for match in _MARKS.finditer(text):
        i, ch = match.start(), match.group()
        marks.append((i, ch in "\u201c\u00ab" or (ch == '"' and (i == 0 or text[i - 1].isspace()
                                                                  or text[i - 1] in "([{\u2014\u2013-/"))))
    return marks


def own_voice(text: str, inside: bool = False) -> str:
    """The words of `text` outside quotation marks (`inside`: it starts inside one), i.e. the article's own voice.
    Guideline rule 3: an evidential hedge there makes a sentence `unverified`; inside a direct quotation it keeps
    the speaker's label, which a bag of the sentence's words alone cannot tell apart."""
    pieces, start = [], 0
    for i, opens in quote_marks(text):
        if not inside:
            pieces.append(text[start:i])
        inside, start = opens, i + 1
    if not inside:
        pieces.append(text[start:])
    return " ".join(" ".join(pieces).split())


def quoted_starts(texts: list[str]) -> list[bool]:
    """For the sentences of one article in order: does each start inside a direct quotation opened by an earlier
    sentence and not yet closed ("We have heard them. We are looking at every option. We will decide," she said:
    the middle sentence carries no mark and no speaker, yet it is her words)."""
    inside, unmarked, starts = False, 0, []
    for text in texts:
        marks = quote_marks(text)
        unmarked = unmarked + 1 if inside and not marks else 0
        inside = inside and unmarked <= MAX_UNMARKED
        starts.append(inside)
        if marks:
            inside = marks[-1][1]
    return starts
