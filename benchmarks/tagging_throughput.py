"""Tagging throughput of one transformer model three ways, on the same sentences, in one run.

1. the naive loop: ``transformers.pipeline("text-classification")`` called once per sentence;
2. our torch path: the logged MLflow pyfunc, length-sorted batches with dynamic padding;
3. our ONNX Runtime paths (fp32 and int8), same pyfunc, ``model_config={"runtime": ...}``.
Agreement with the torch path (max probability difference, label agreement) is printed beside the speed.
Usage: python benchmarks/tagging_throughput.py --model models:/newstag@candidate [--n 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import mlflow
import numpy as np
import pandas as pd
import torch
from transformers import PretrainedConfig, PreTrainedModel, pipeline
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging as hf_logging

from train.classifier import load as load_classifier

hf_logging.set_verbosity_error()  # pipeline() warns that our adapter is not a registered architecture; it works


class PipelineAdapter(PreTrainedModel):
    """Our encoder + pooling + head behind the interface ``pipeline()`` expects; same weights, same numbers."""

    config_class = PretrainedConfig

    def __init__(self, inner, labels):
        config = PretrainedConfig(id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
        super().__init__(config)
        self.inner = inner

    def forward(self, input_ids=None, attention_mask=None, **_):
        return SequenceClassifierOutput(logits=self.inner(input_ids, attention_mask)["logits"])


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models:/newstag@candidate")
    parser.add_argument("--data", default="data/corpus/sentences.jsonl")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    frame = pd.read_json(args.data, lines=True)
    if "split" in frame:
        frame = frame[frame["split"] == "dev"]
    texts = frame["text"].head(args.n).tolist()
    model_dir = os.path.join(mlflow.artifacts.download_artifacts(args.model), "artifacts", "model")

    torch_clf = load_classifier(model_dir, runtime="torch")
    adapter = PipelineAdapter(torch_clf.model, torch_clf.labels).eval()
    pipe = pipeline("text-classification", model=adapter, tokenizer=torch_clf.tokenizer, device=-1, top_k=None,
                    truncation=True, max_length=torch_clf.max_length)
    naive_t, naive_out = timed(lambda: [pipe(t) for t in texts], args.repeats)
    naive_out = [out[0] if out and isinstance(out[0], list) else out for out in naive_out]  # some versions nest
    naive = np.array([[next(d["score"] for d in out if d["label"] == label) for label in torch_clf.labels] for out in naive_out])

    rows, reference = [], None
    for runtime in ("torch", "onnx", "onnx-int8"):
        model = mlflow.pyfunc.load_model(args.model, model_config={"runtime": runtime})
        batch = pd.DataFrame({"text": texts})
        seconds, out = timed(lambda: model.predict(batch), args.repeats)
        proba = out[[f"prob_{label}" for label in torch_clf.labels]].to_numpy()
        reference = proba if reference is None else reference
        rows.append((f"pyfunc {runtime} (batched, dynamic padding)", seconds, proba))
    # Naive probabilities are softmax without our temperature: compare labels, not probabilities, for it.
    print(f"{len(texts)} dev sentences, {torch.get_num_threads()} torch threads, median of {args.repeats} runs\n")
    print("| path | seconds | sentences/s | speed-up vs naive | max prob diff vs torch | label agreement vs torch |")
    print("|---|---|---|---|---|---|")
    print(f"| naive pipeline loop (one sentence a call) | {naive_t:.2f} | {len(texts) / naive_t:,.0f} | 1.0x | n/a (no temperature) "
          f"| {(naive.argmax(1) == reference.argmax(1)).mean():.2%} |")
    for name, seconds, proba in rows:
        print(f"| {name} | {seconds:.2f} | {len(texts) / seconds:,.0f} | {naive_t / seconds:.1f}x "
              f"| {np.abs(proba - reference).max():.2e} | {(proba.argmax(1) == reference.argmax(1)).mean():.2%} |")


if __name__ == "__main__":
    main()
