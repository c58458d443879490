"""The transformer's loader: tokenises once, then scores in batches of one length or packed calls."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from newstag_model.context import with_context
from newstag_model.encoder import group_rows, load_encoder_classifier
from newstag_model.encoding import (PACKED_ROWS, article_chunks, encoder_inputs, encoder_tokenizer, length_batches,
                                    packed_batches)
from newstag_model.probability import log_softmax, pool_quote_spans, read_stack, second_stage, softmax
from newstag_model.runtime import AUTO, RUNTIMES, reduced_precision, resolve_runtime


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
