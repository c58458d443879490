"""The one classifier interface and the MLflow pyfunc that wraps it (a models-from-code file).

MLflow copies this file into every logged model, so it imports nothing from the project: a model directory
(``meta.json`` + TF-IDF terms and weights as JSON and npz, or safetensors encoder + tokenizer + head) is everything
inference needs.  Nothing here unpickles: arrays load with ``allow_pickle=False``, older baselines through skops
with an explicit allow-list of types, torch weights are safetensors.
Every kind exposes ``labels`` and ``predict_proba(texts)`` (and, for ensembles, ``sentence_proba`` before quotation
pooling); the trainers evaluate through this same code, so what is scored is exactly what is logged.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

META = "meta.json"
# Types skops does not trust by default that older baselines (skops pipelines) contain (probability calibration).
SKOPS_ALLOWED = {"sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"}
RUNTIMES = ("torch", "torch-bf16", "torch-int8", "onnx", "onnx-int8")
AUTO = "auto"  # torch-bf16 where the CPU computes bfloat16 natively, else ONNX fp32 (torch for a model without a graph)


def read_meta(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / META).read_text(encoding="utf-8"))


def write_meta(model_dir: str | Path, meta: dict) -> None:
    (Path(model_dir) / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


# What a logged model reads: column -> (MLflow type, required).  The signature and `model_inputs` come from here.
INPUT_COLUMNS = {"text": ("string", True), "article_id": ("string", False), "sentence_index": ("long", False),
                 "title": ("string", False)}


def as_frame(inputs) -> pd.DataFrame:
    """Texts, a Series or a DataFrame with `text` (+ optional `article_id`, `sentence_index`, `title`)."""
    if isinstance(inputs, pd.Series):
        inputs = inputs.to_frame("text")
    if not isinstance(inputs, pd.DataFrame):
        inputs = pd.DataFrame({"text": list(inputs)})
    if "text" not in inputs.columns:
        raise ValueError("newstag models take a DataFrame with a `text` column")
    return inputs


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """What a logged model reads of labelled rows: the text and, where present, its place in its article."""
    columns = [c for c in INPUT_COLUMNS if c in frame.columns]
    inputs = frame[columns].copy()
    if "article_id" in inputs.columns:
        inputs["article_id"] = inputs["article_id"].map(lambda a: None if pd.isna(a) else str(a))
    return inputs


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


def pool_quote_spans(proba: np.ndarray, span) -> np.ndarray:
    """One decision for each quotation that runs over several sentences (guideline rule 4: its inside pieces take
    its speaker's label, and on the real corpus 97 % of such quotations carry one label): each of its sentences
    gets the normalised geometric mean of their probabilities, so the sentence that names the speaker lends its
    evidence to the ones that do not.  `span` comes from :func:`with_context`; other rows keep their own."""
    span = np.asarray(span, dtype=np.int64)
    joined = np.flatnonzero(span != np.arange(len(span)))
    if not len(joined):
        return proba
    members = np.union1d(joined, span[joined])
    heads, inverse = np.unique(span[members], return_inverse=True)
    logp = np.zeros((len(heads), proba.shape[1]))
    np.add.at(logp, inverse, np.log(np.clip(proba[members], 1e-12, None)))
    pooled = proba.copy()
    pooled[members] = softmax(logp / np.bincount(inverse)[:, None])[inverse]
    return pooled


QUOTED = "quoted"
# A quotation left open runs at most this many sentences without a quote mark: a stray mark does not turn the
# rest of an article into speech (on the real corpus, 96.5 % of the unmarked sentences so found are quotes or
# responses at 3, 95.6 % with no limit).
MAX_UNMARKED = 3


_MARKS = re.compile("[\"\u201c\u201d\u00ab\u00bb]")


def _quote_marks(text: str) -> list[tuple[int, bool]]:
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
    for i, opens in _quote_marks(text):
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
        marks = _quote_marks(text)
        unmarked = unmarked + 1 if inside and not marks else 0
        inside = inside and unmarked <= MAX_UNMARKED
        starts.append(inside)
        if marks:
            inside = marks[-1][1]
    return starts


def stack_features(frame: pd.DataFrame, log_proba: np.ndarray, window: int) -> np.ndarray:
    """The baseline's second stage input (``stack_window``), one row per sentence of a :func:`with_context` frame:
    its first-stage log-probabilities; those of each sentence up to `window` before and after it in its article
    (zeros, and a flag 0, where there is none); whether it is first, second, last or alone; whether it starts inside
    a quotation and continues an earlier sentence's; the article's mean first-stage probabilities.  The neighbours'
    labels tell what a lone sentence cannot: "The company denied it." after an allegation, or the inside pieces of a
    quotation after the sentence that names its speaker."""
    n, labels = log_proba.shape
    article, position = frame["article"].to_numpy(), frame["position"].to_numpy()
    order = np.lexsort((position, article))  # reading order: a neighbour is the next row of the same article
    columns = [log_proba]
    for offset in [d for d in range(-window, window + 1) if d]:
        there = np.arange(n) + offset
        ok = (there >= 0) & (there < n)
        ok[ok] &= article[order[there[ok]]] == article[order[ok]]
        values, present = np.zeros((n, labels)), np.zeros((n, 1))
        values[order[ok]], present[order[ok]] = log_proba[order[there[ok]]], 1.0
        columns += [values, present]
    articles = article.max(initial=-1) + 1
    size = np.bincount(article, minlength=articles)[article]
    columns.append(np.column_stack([position == 0, position == 1, position == size - 1, size == 1,
                                    frame["quoted"].str.len().to_numpy() > 0,
                                    frame["span"].to_numpy() != np.arange(n)]).astype(np.float64))
    mean = np.zeros((articles, labels))
    np.add.at(mean, article, np.exp(log_proba))
    columns.append(mean[article] / size[:, None])
    return np.hstack(columns)


def read_stack(path: Path, meta: dict) -> tuple[int, tuple[np.ndarray, np.ndarray] | None]:
    """A model's second stage (meta ``stack_window``; its arrays ``stack.coef`` and ``stack.intercept`` in the npz
    file at `path`) as (window, (coef, intercept)), or (0, None) for a model without one."""
    window = int(meta.get("stack_window", 0))
    if not window:
        return 0, None
    with np.load(path, allow_pickle=False) as npz:
        return window, (npz["stack.coef"], npz["stack.intercept"])


def second_stage(frame: pd.DataFrame, log_proba: np.ndarray, window: int, stack) -> np.ndarray:
    """The second stage's scores, in label order, from the first stage's log-probabilities of a whole frame."""
    coef, intercept = stack
    return stack_features(frame, log_proba, window) @ coef.T + intercept


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# The vectorizer parameters that decide how a string is cut into n-grams (not which n-grams are kept).
_ANALYSIS = ("input", "encoding", "decode_error", "strip_accents", "lowercase", "preprocessor", "tokenizer",
             "stop_words", "token_pattern", "ngram_range", "analyzer")


def _skops_parts(model_dir: Path, meta: dict):
    import skops.io as sio

    path = model_dir / meta["weights"]
    # One pass: skops refuses any type outside its defaults and our allow-list.
    try:
        pipeline = sio.load(path, trusted=sorted(SKOPS_ALLOWED))
    except sio.exceptions.UntrustedTypesFoundException as err:
        raise ValueError(f"{path}: refusing to load unexpected types ({err})") from None
    columns = pipeline[0]
    weights = columns.transformer_weights or {}
    return [(n, v, c, weights.get(n)) for n, v, c in columns.transformers_ if n != "remainder"], pipeline[-1]


def _plain_parts(model_dir: Path, meta: dict):
    """scikit-learn objects rebuilt from ``baseline.json`` and ``baseline.npz`` (numbers only: no pickle)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    spec = json.loads((model_dir / meta["spec"]).read_text(encoding="utf-8"))
    with np.load(model_dir / meta["weights"], allow_pickle=False) as npz:
        arrays = dict(npz)
    blocks = []
    for block in spec["blocks"]:
        params = {**block["params"], "ngram_range": tuple(block["params"]["ngram_range"]),
                  "dtype": np.dtype(block["params"]["dtype"]).type}
        vectorizer = TfidfVectorizer(**params)
        vectorizer.vocabulary_ = dict(zip(block["terms"], range(len(block["terms"]))))
        vectorizer.idf_ = arrays[f"idf.{block['name']}"]
        vectorizer._tfidf.n_features_in_ = len(block["terms"])
        blocks.append((block["name"], vectorizer, block["column"], block["weight"]))
    classes = np.array(spec["classes"])
    members = []
    for k in range(spec["members"]):
        linear = LogisticRegression()
        linear.classes_, linear.coef_, linear.intercept_ = classes, arrays[f"coef.{k}"], arrays[f"intercept.{k}"]
        linear.n_features_in_ = linear.coef_.shape[1]
        members.append(linear)
    if spec["calibration"] is None:
        return blocks, members[0]
    from sklearn.calibration import CalibratedClassifierCV, _CalibratedClassifier, _SigmoidCalibration

    def sigmoid(a: float, b: float) -> _SigmoidCalibration:
        calibrator = _SigmoidCalibration()
        calibrator.a_, calibrator.b_ = a, b
        return calibrator

    estimator = CalibratedClassifierCV(LogisticRegression(), method="sigmoid")
    estimator.classes_ = classes
    estimator.calibrated_classifiers_ = [
        _CalibratedClassifier(member, [sigmoid(a, b) for a, b in zip(arrays[f"sigmoid_a.{k}"],
                                                                     arrays[f"sigmoid_b.{k}"])],
                              classes=classes, method="sigmoid") for k, member in enumerate(members)]
    return blocks, estimator


class BaselineClassifier:
    """TF-IDF blocks (name, vectorizer, column, weight) and a linear classifier, from plain files
    (``baseline.save``) or, for models logged before 2026-12, a skops pipeline."""

    # One runtime (scikit-learn) and one thread: `threads` is accepted for the common loader signature.
    def __init__(self, model_dir: Path, meta: dict, runtime: str | None = None, threads: int | None = None):
        loader = _skops_parts if meta["weights"].endswith(".skops") else _plain_parts
        self.blocks, self.estimator = loader(model_dir, meta)
        self.labels = tuple(meta["labels"])
        self.context = meta.get("context") or {}
        # The classifier's class order is alphabetical; map it onto the model's label order once.
        self._order = [list(self.estimator.classes_).index(label) for label in self.labels]
        self._words: dict[int, dict[str, np.ndarray]] = {}  # per char_wb vectorizer: word -> in-vocabulary columns
        self._per_block = self._block_coefficients()
        self.temperature = float(meta.get("temperature", 1.0))
        self.offsets = np.asarray(meta.get("offsets", np.zeros(len(self.labels))), dtype=np.float64)
        self.stack_window, self.stack = read_stack(model_dir / meta["weights"], meta)

    def _block_coefficients(self) -> list[np.ndarray] | None:
        """A linear model (one multinomial regression, or NB-LR's regression a label) scores a sentence as the sum
        of its blocks' scores: each block's weighted coefficients, (block columns x classes), so that no (sentences x
        all columns) matrix is stacked (scipy's hstack was a third of the model's time).  None for a calibrated or a
        two-class multinomial model."""
        linear = self.estimator
        if not hasattr(linear, "coef_") or linear.coef_.shape[0] != len(linear.classes_):
            return None
        out, start = [], 0
        for _, vectorizer, _, weight in self.blocks:
            stop = start + len(vectorizer.vocabulary_)
            out.append(np.ascontiguousarray(linear.coef_[:, start:stop].T * (1.0 if weight is None else weight)))
            start = stop
        return out

    def predict_proba(self, inputs) -> np.ndarray:
        frame = with_context(inputs, **self.context)
        return pool_quote_spans(self.sentence_proba(frame), frame["span"])

    def sentence_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Each sentence's own probabilities (of a :func:`with_context` frame), before quotation pooling: the
        softmax of the scores over the temperature plus the label offsets (scikit-learn's predict_proba where they
        are 1 and 0)."""
        if frame.empty:
            return np.zeros((0, len(self.labels)))
        if not hasattr(self.estimator, "coef_"):  # sigmoid-calibrated
            return self.estimator.predict_proba(self.features(frame))[:, self._order]
        return softmax(self.scores(frame) / self.temperature + self.offsets)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's scores in label order (of a :func:`with_context` frame): the second stage's where there is one
        (:func:`stack_features` of the first stage's), else the first stage's."""
        first = self.linear_scores(frame)
        return first if self.stack is None else second_stage(frame, log_softmax(first), self.stack_window, self.stack)

    def linear_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """The first stage's linear scores in label order, summed block by block."""
        if self._per_block is None:  # two labels, one row of coefficients: the log-odds of the second
            odds = self.estimator.decision_function(self.features(frame))
            return np.column_stack([np.zeros_like(odds), odds])[:, self._order]
        analysed, scores = {}, np.tile(self.estimator.intercept_, (len(frame), 1))
        for (_, vectorizer, column, _), coef in zip(self.blocks, self._per_block):
            scores += self._tfidf(vectorizer, frame[column].tolist(), analysed) @ coef
        return scores[:, self._order]

    def features(self, frame: pd.DataFrame):
        """scikit-learn's ColumnTransformer output, exactly, in half the time.  scikit-learn analyses every string
        of every block anew; here a string is analysed once for all blocks that analyse alike (a sentence is the
        target of one row and the context of its neighbours), and the character n-grams of a word, which never
        cross words, once per process."""
        from scipy import sparse

        analysed = {}
        blocks = []
        for _, vectorizer, column, weight in self.blocks:
            block = self._tfidf(vectorizer, frame[column].tolist(), analysed)
            blocks.append(block * weight if weight is not None else block)
        return sparse.hstack(blocks).tocsr()

    def _tfidf(self, vectorizer, docs: list[str], analysed: dict):
        from scipy import sparse

        if vectorizer.analyzer not in ("word", "char_wb") or vectorizer.binary:
            return vectorizer.transform(docs)
        params = vectorizer.get_params()
        grams = analysed.setdefault(repr([params[k] for k in _ANALYSIS]), {})
        split, analyze = vectorizer.analyzer == "char_wb", vectorizer.build_analyzer()
        vocabulary = vectorizer.vocabulary_
        cache = self._words.setdefault(id(vectorizer), {}) if split else {}
        if len(cache) > 500_000:  # bounded memory (~100 MB) on endless dumps
            cache.clear()
        # counts = (documents x distinct units) @ (distinct units x vocabulary), a unit being a word for character
        # n-grams, else the whole string; integer counts in float64, so the product is exact.
        local: dict[str, int] = {}
        units, indptr = [], [0]
        for doc in docs:
            units += [local.setdefault(unit, len(local)) for unit in (doc.split() if split else (doc,))]
            indptr.append(len(units))
        found = []
        for unit in local:  # in local-index order
            columns = cache.get(unit)
            if columns is None:
                if (unit_grams := grams.get(unit)) is None:
                    unit_grams = grams[unit] = analyze(unit)
                columns = np.array([j for j in map(vocabulary.get, unit_grams) if j is not None], dtype=np.int32)
                if split:
                    cache[unit] = columns
            found.append(columns)
        unit_ptr = np.concatenate([[0], np.cumsum([len(c) for c in found], dtype=np.int64)])
        by_unit = sparse.csr_matrix((np.ones(unit_ptr[-1], dtype=vectorizer.dtype),
                                     np.concatenate(found) if found else np.zeros(0, np.int32), unit_ptr),
                                    shape=(len(local), len(vocabulary)))
        by_doc = sparse.csr_matrix((np.ones(len(units), dtype=vectorizer.dtype), np.asarray(units, dtype=np.int64),
                                    np.asarray(indptr, dtype=np.int64)), shape=(len(docs), len(local)))
        by_unit.sum_duplicates()
        by_doc.sum_duplicates()
        counts = (by_doc @ by_unit).tocsr()
        counts.sort_indices()
        return vectorizer._tfidf.transform(counts, copy=False)


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
    transformers (~1.7 s of a one-article ``newstag tag``, README "Tagging throughput").  Inference only.  Module
    names are transformers', so the weights load as they are and :func:`reduced_precision` finds the same layers."""
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


BF16_ROWS = 256  # rows of every bf16 product; see reduced_precision


def reduced_precision(model, runtime: str):
    """`model` with its encoder's Linear layers computed in bfloat16 (``torch-bf16``: fp32 accumulation) or int8
    (``torch-int8``: weights per output channel, activations per token, exact int32 accumulation), built from the fp32
    weights at load time, so no artifact is added (models logged before them lack them: a model carries the
    classifier.py it was logged with).  LayerNorm, the residual stream, attention softmax and the head stay fp32
    (MPNet's attention reads bf16 q, k, v in torch's fused kernel, whose sums and softmax are fp32).

    A sentence scores the same in any batch: int8 scales are per row, and every bf16 product has exactly
    ``BF16_ROWS`` rows.  oneDNN's AMX kernels pick their blocking, and so the fp32
    summation order, by the row count: without fixed blocks a probability moved by 2e-2 between batch sizes on an
    AMX Xeon (1e-7 with them, README "Tagging throughput").  256 rows is also a count whose results do not change
    with the thread count there, and small calls (one article) pay little for it: 768-row blocks, faster alone for
    the widening products, gained ~2 % on a 1,200-sentence dump and cost a one-sentence call 72 ms instead of 46.
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


class TransformerClassifier:
    """Tokenises once, then runs batches of equal-length rows (:func:`length_batches`) through torch or ONNX Runtime,
    or, for the reduced runtimes' own MPNet, packed calls of several lengths (:func:`packed_batches`)."""

    def __init__(self, model_dir: Path, meta: dict, runtime: str | None = None, threads: int | None = None):
        """``threads``: intra-op threads (default: the runtime's, one per core); worker processes that share the
        cores ask for fewer."""
        self.labels = tuple(meta["labels"])
        self.context = meta.get("context") or {}
        self.max_length = int(meta["max_length"])
        self.batch_size = int(meta.get("batch_size", 64))
        self.temperature = float(meta.get("temperature", 1.0))
        self.stack_window, self.stack = read_stack(model_dir / "stack.npz", meta)
        # Set by training where the second stage was fitted on dev: dev's probabilities from stages fitted on the other
        # article folds, which the run reports instead of the in-sample ones (a reloaded model scores dev in-sample).
        self.cross_fitted: dict[str, np.ndarray] = {}
        self._last = None  # (digest of the token ids, their logits)
        self.runtime = resolve_runtime(runtime or meta.get("runtime", "torch"), model_dir)
        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {self.runtime!r}; expected one of {AUTO}, {', '.join(RUNTIMES)}")
        self.tokenizer, self.sep = encoder_tokenizer(model_dir / "encoder", self.max_length)
        self.packed = False  # the reduced runtimes' own MPNet runs sentences of several lengths in one call
        if self.runtime.startswith("torch"):
            if threads:
                import torch

                torch.set_num_threads(threads)
            self.model = load_encoder_classifier(model_dir, meta, plain=self.runtime != "torch")
            if self.runtime != "torch":
                self.model = reduced_precision(self.model, self.runtime)
            self.packed = hasattr(self.model.encoder, "forward_packed")
        else:
            import onnxruntime as ort

            name = "model.int8.onnx" if self.runtime == "onnx-int8" else "model.onnx"
            if not (model_dir / name).exists():
                raise ValueError(f"this model was logged without {name}; retrain it with this version of newstag")
            options = ort.SessionOptions()
            options.log_severity_level = 3
            if threads:
                options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(str(model_dir / name), options, providers=["CPUExecutionProvider"])

    def encode(self, frame: pd.DataFrame) -> tuple[list[list[int]], list[list[int]] | None]:
        """Token ids of exactly what the model reads (special tokens included) and, for a chunked model, each
        token's row (:func:`article_chunks`), of a :func:`with_context` frame; else one input a row
        (:func:`encoder_inputs`) and None."""
        chunk_tokens = self.context.get("chunk_tokens")
        if chunk_tokens:
            chunks = article_chunks(frame, self.tokenizer, chunk_tokens, self.context.get("window", 0), self.max_length)
            return [ids for ids, _ in chunks], [rows for _, rows in chunks]
        texts, pairs = encoder_inputs(frame, self.sep, bool(self.context.get("window") or self.context.get("title")))
        return [e.ids for e in self.tokenizer.encode_batch(list(zip(texts, pairs)) if pairs else texts)], None

    def logits(self, inputs) -> np.ndarray:
        """Each sentence's own logits (before temperature and quotation pooling: what the temperature is fitted on)."""
        return self._logits(with_context(inputs, **self.context))

    def _logits(self, frame: pd.DataFrame) -> np.ndarray:
        """Remembers the last input set's logits: training scores dev for the temperature, then for the report."""
        ids, owners = self.encode(frame)
        key = hashlib.blake2b(repr((ids, owners)).encode(), digest_size=16).digest()
        if self._last is not None and self._last[0] == key:
            return self._last[1].copy()
        out = np.zeros((len(frame), len(self.labels)), dtype=np.float32)
        if owners is None:
            for idx, logits in self._run(ids):
                out[idx] = logits
        else:  # each sentence: the mean of its tokens' logits (the head is affine, see encoder_classifier)
            rows, values = [np.zeros(0, dtype=np.int64)], [np.zeros((0, len(self.labels)))]
            for idx, logits in self._run(ids):
                for chunk, tokens in zip(idx, logits):
                    owner = np.asarray(owners[chunk])
                    rows.append(owner[owner >= 0])
                    values.append(tokens[owner >= 0].astype(np.float64))
            rows = np.concatenate(rows)
            sums = np.zeros(out.shape)
            np.add.at(sums, rows, np.concatenate(values))
            out[:] = sums / np.bincount(rows, minlength=len(out)).clip(min=1)[:, None]
        self._last = (key, out.copy())
        return out

    def _run(self, ids: list[list[int]]):
        """(input numbers, their logits) for every model call over all `ids`; a chunked model's logits are each
        token's, (inputs, tokens, labels)."""
        lengths = [len(i) for i in ids]
        if self.packed:
            import torch

            for groups in packed_batches(lengths, PACKED_ROWS):
                with torch.inference_mode():
                    logits = self.model.forward_packed([torch.tensor([ids[i] for i in g]) for g in groups]).numpy()
                if not self.model.chunked:
                    yield np.concatenate(groups), logits
                    continue
                for (rows, (count, length)), group in zip(group_rows(logits, [(len(g), lengths[g[0]]) for g in groups]),
                                                          groups):
                    yield group, rows.reshape(count, length, -1)
            return
        for idx in length_batches(lengths, self.batch_size):
            batch = np.array([ids[i] for i in idx], dtype=np.int64)
            mask = np.ones_like(batch)
            if self.runtime.startswith("torch"):
                import torch

                with torch.inference_mode():
                    yield idx, self.model(torch.from_numpy(batch), torch.from_numpy(mask))["logits"].numpy()
            else:
                yield idx, self.session.run(["logits"], {"input_ids": batch, "attention_mask": mask})[0]

    def predict_proba(self, inputs) -> np.ndarray:
        frame = with_context(inputs, **self.context)
        return pool_quote_spans(self.sentence_proba(frame), frame["span"])

    def sentence_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Each sentence's own calibrated probabilities (of a :func:`with_context` frame), before quotation pooling:
        the second stage's where the model has one (fitted on dev)."""
        logits = self._logits(frame).astype(np.float64) / self.temperature
        if self.stack is None:
            return softmax(logits)
        return softmax(second_stage(frame, log_softmax(logits), self.stack_window, self.stack))


class EnsembleClassifier:
    """Several models read as one: the weighted geometric mean of their per-sentence probabilities (meta
    ``weights``, fitted on dev), scaled by a temperature fitted there too, then one decision a quotation.

    Members are model directories under ``members/``, each loaded by its own kind with the runtime asked for (a
    baseline ignores it) and read with its own context; the ensemble's context only says whether to pool."""

    def __init__(self, model_dir: Path, meta: dict, runtime: str | None = None, threads: int | None = None):
        self.labels = tuple(meta["labels"])
        self.context = meta.get("context") or {}
        self.members = [load(model_dir / member["dir"], runtime, threads) for member in meta["members"]]
        self.runtime = next((m.runtime for m in self.members if getattr(m, "runtime", None)), None)  # its encoder's
        self.weights = np.asarray(meta["weights"], dtype=np.float64)
        self.temperature = float(meta.get("temperature", 1.0))

    def member_log_proba(self, inputs) -> np.ndarray:
        """(members, rows, labels): each member's per-sentence log-probabilities, each read with its own context."""
        frame = as_frame(inputs)
        return np.stack([np.log(np.clip(m.sentence_proba(with_context(frame, **m.context)), 1e-12, None))
                         for m in self.members])

    def combine(self, log_proba: np.ndarray, weights=None, temperature: float | None = None) -> np.ndarray:
        """Normalised weighted geometric mean of the members' probabilities (``member_log_proba``)."""
        weights = self.weights if weights is None else np.asarray(weights, dtype=np.float64)
        temperature = self.temperature if temperature is None else temperature
        return softmax(np.tensordot(weights, log_proba, axes=1) / temperature)

    def predict_proba(self, inputs) -> np.ndarray:
        frame = with_context(inputs, quote_spans=bool(self.context.get("quote_spans")))
        return pool_quote_spans(self.combine(self.member_log_proba(inputs)), frame["span"])


def encoder_texts(frame: pd.DataFrame) -> list[str]:
    """The sentences as the encoder reads them.  A sentence that continues an open quotation gets the opening mark it
    lacks: it then reads as the quoted sentences that the encoder has seen in quotation marks."""
    return [f'"{t}' if q and _quote_marks(t[:1]) != [(0, True)] else t for t, q in zip(frame["text"], frame["quoted"])]


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


# The registry of model kinds is train/kinds.py; this file may not import it (MLflow loads it alone, see the
# module docstring), so it keeps this one dispatch table, which tests hold equal to the registry's loaders.
LOADERS = {"baseline": BaselineClassifier, "transformer": TransformerClassifier, "ensemble": EnsembleClassifier}


def load(model_dir: str | Path, runtime: str | None = None, threads: int | None = None):
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if meta["kind"] not in LOADERS:
        raise ValueError(f"{model_dir}: unknown model kind {meta['kind']!r}")
    return LOADERS[meta["kind"]](model_dir, meta, runtime, threads)


def predictions_frame(labels: tuple[str, ...], proba: np.ndarray) -> pd.DataFrame:
    """The pyfunc's output: ``label``, ``score`` and one ``prob_<label>`` column per label, in label order."""
    proba = np.asarray(proba, dtype=np.float64).reshape(-1, len(labels))
    frame = pd.DataFrame({"label": [labels[i] for i in proba.argmax(axis=1)], "score": proba.max(axis=1)})
    for i, label in enumerate(labels):
        frame[f"prob_{label}"] = proba[:, i]
    return frame


class NewstagModel(PythonModel):
    """Takes a DataFrame with a ``text`` column; ``model_config={"runtime": "onnx", "threads": 1}`` picks the runtime
    and its intra-op threads at load."""

    def load_context(self, context):
        config = context.model_config or {}
        self.classifier = load(context.artifacts["model"], config.get("runtime"), config.get("threads"))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Rows of one `article_id` are read as one article (each other's context); other rows stand alone."""
        return predictions_frame(self.classifier.labels, self.classifier.predict_proba(as_frame(model_input)))


mlflow.models.set_model(NewstagModel())
