"""The baseline's loader: TF-IDF blocks and a linear model rebuilt from plain files (no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from newstag_model.context import with_context
from newstag_model.probability import log_softmax, pool_quote_spans, read_stack, second_stage, softmax


# Types skops does not trust by default that older baselines (skops pipelines) contain (probability calibration).
SKOPS_ALLOWED = {"sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"}


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
