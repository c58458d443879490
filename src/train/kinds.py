"""The model kinds, each declared once: its ``model:`` config section, trainer, loader, requirements and runtimes.

Config validation, the trainer table, the logged model's pip requirements and ``newstag tag --runtime`` all read
this registry, so adding a kind is a trainer module plus its config section and one ``register`` line here
(README "Adding a model kind").  Trainers are named as ``module:function`` and imported only when their kind
trains, so validating a baseline config never imports torch.  The loader classes live in the ``newstag_model``
package, which travels alone with each model and so keeps its own dispatch on ``meta["kind"]``
(``newstag_model.load.LOADERS``), which a test holds equal to this registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from newstag_model.baseline import BaselineClassifier
from newstag_model.load import EnsembleClassifier
from newstag_model.runtime import AUTO, RUNTIMES
from newstag_model.transformer import TransformerClassifier


class Strict(BaseModel):
    """Every config section refuses unknown keys (a typo is an error, not a silent default) and is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Kind:
    name: str
    params: type[Strict]  # the `model:` section of a config of this kind
    trainer: str  # "module:function" with fit(cfg, splits, model_dir, log_step) -> classifier
    loader: type  # the class in newstag_model that loads a model directory of this kind
    requirements: tuple[str, ...]  # pip distributions its logged model needs beyond COMMON_REQUIREMENTS
    runtimes: tuple[str, ...] = ()  # inference runtimes it can switch between at load time
    check: str = ""  # "module:function" with check(cfg): what validation cannot see (files a config names)

    def fit(self, *args, **kwargs):
        return _call(self.trainer, *args, **kwargs)

    def check_config(self, cfg) -> None:
        """Called before a run opens, so a bad member config fails fast and leaves no failed run behind."""
        if self.check:
            _call(self.check, cfg)


def _call(target: str, *args, **kwargs):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)(*args, **kwargs)


# What newstag_model imports at module level: every logged model needs these.
COMMON_REQUIREMENTS = ("mlflow", "pandas", "numpy")
KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    if kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> Kind:
    return KINDS[name]


def runtimes() -> tuple[str, ...]:
    """Every runtime any kind offers, in registration order: the choices of ``newstag tag --runtime``."""
    return tuple(dict.fromkeys(r for kind in KINDS.values() for r in kind.runtimes))


class BaselineModel(Strict):
    kind: Literal["baseline"]
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (3, 5)
    min_df: int = Field(1, ge=1)
    max_features: int | None = Field(None, ge=1)
    sublinear_tf: bool = True
    C: float = Field(4.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = Field(2000, ge=10)
    calibrate: bool = Field(False, description="sigmoid calibration of probabilities on train folds")
    nb_scaling: bool = Field(False, description="NB-LR (Wang & Manning, 2012): one logistic regression a label, on "
                             "features scaled by that label's log-count ratio, instead of one multinomial model")
    temperature_scaling: bool = Field(False, description="divide the scores by a temperature fitted on dev")
    context_weight: float = Field(0.5, gt=0, description="scale of the context features against the sentence's own")
    voice_weight: float = Field(1.0, ge=0, description="scale of a block of the words outside quotation marks "
                                "(the article's own voice, where a hedge counts); 0 leaves it out")
    stack_window: int = Field(0, ge=0, le=5, description="a second stage reads the first stage's scores of each "
                              "sentence and of up to this many sentences before and after it in its article; 0: off")
    stack_folds: int = Field(5, ge=2, le=20, description="article folds of train for the first stage's out-of-fold "
                             "scores that the second stage learns from")
    tune_offsets: bool = Field(False, description="per-label offsets on the log-probabilities, fitted on dev for "
                               "macro-F1 (the dev scores then read optimistic; test does not)")

    @model_validator(mode="after")
    def _one_calibration(self) -> BaselineModel:
        if self.calibrate and (self.nb_scaling or self.temperature_scaling or self.stack_window or self.tune_offsets):
            raise ValueError("calibrate: not with nb_scaling, temperature_scaling, stack_window or tune_offsets (it "
                             "replaces the model's own scores); use temperature_scaling")
        return self


class TransformerModel(Strict):
    kind: Literal["transformer"]
    name_or_path: str = "sentence-transformers/all-MiniLM-L6-v2"
    pooling: Literal["cls", "mean", "target"] = "mean"
    max_length: int = Field(128, ge=8, le=4096)
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    epochs: float = Field(4, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    class_weights: Literal["balanced"] | None = "balanced"
    early_stopping_patience: int | None = Field(2, ge=1)
    train_precision: Literal["auto", "fp32", "bf16"] = Field(
        "fp32", description="bf16: autocast with fp32 master weights, ~1.8x faster steps where the CPU computes bf16 "
                            "natively (AVX-512 BF16, AMX), slower where it emulates it; auto: bf16 there, else fp32 "
                            "(the run's tag resolved.train_precision says which)")
    dropout: float | None = Field(None, ge=0, lt=1, description="every dropout probability of the encoder and the "
                                  "head (null: the checkpoint's own, 0.1 for the head); 0 saves dropout's random "
                                  "masks, ~12% of a CPU training step")
    encoder_layers: int | None = Field(None, ge=1, description="keep only the pretrained encoder's lowest N layers "
                                       "(null: all): each dropped layer is a share of every training step and of "
                                       "every tagged sentence; the logged encoder is the shorter one")
    freeze_layers: int = Field(0, ge=0, description="keep the embeddings and the lowest N encoder layers at their "
                                                    "pretrained weights: fewer gradients and optimizer updates a step")
    lora_rank: int = Field(0, ge=0, description="learn a rank-N update beside each frozen Linear weight of the "
                                                "trainable blocks (LoRA; 0: fine-tune the weights themselves): no "
                                                "weight gradients for the big products; merged before logging")
    lora_alpha: float = Field(32.0, gt=0, description="LoRA's update is scaled by lora_alpha / lora_rank")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="share of each sentence's target spread evenly over "
                                                              "the labels: softer targets for noisy labels")
    layer_lr_decay: float = Field(
        1.0, gt=0, le=1, description="the head learns at learning_rate, each encoder block at this times the rate of "
                                     "the block above it (1: one rate for all): the lower, more general blocks move "
                                     "less (layer-wise learning-rate decay)")
    runtime: Literal[(AUTO, *RUNTIMES)] = Field(
        "torch", description="inference runtime of the logged model (torch when there is no ONNX graph); auto: "
                             "torch-bf16 on CPUs with native bfloat16, else onnx, chosen where the model loads")
    temperature_scaling: bool = True
    stack_window: int = Field(0, ge=0, le=5, description="a second stage, fitted on dev, reads the model's "
                              "probabilities of each sentence and of up to this many sentences before and after it "
                              "in its article; 0: off")
    stack_folds: int = Field(5, ge=2, le=20, description="article folds of dev: the run reports each dev article's "
                             "scores from a second stage fitted on the other folds")
    export_onnx: bool = Field(True, description="also ship ONNX fp32/int8 graphs (false, or a failed export: torch only)")


class EnsembleMember(Strict):
    """One model of an ensemble: a config trained in the ensemble's run, or a model already logged."""

    config: str | None = Field(None, description="config file trained in this run (path relative to the file that "
                                                 "names it); it shares the ensemble's seed, labels and splits")
    model: str | None = Field(None, description="a logged model's URI (runs:/…/model, models:/name@alias), copied in")
    name: str | None = Field(None, description="name of its metrics (members/<name>/…); default: the config's file "
                                               "stem, or member<i>")

    @model_validator(mode="after")
    def _one_source(self) -> EnsembleMember:
        if (self.config is None) == (self.model is None):
            raise ValueError("give exactly one of `config` (trained here) and `model` (a logged model URI)")
        return self


class EnsembleModel(Strict):
    kind: Literal["ensemble"]
    members: list[EnsembleMember] = Field(min_length=2, max_length=4)
    weights: list[float] | None = Field(
        None, description="one per member, >= 0; null: fitted on dev (macro-F1 over a 0.05 grid of the simplex)")
    temperature_scaling: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> EnsembleModel:
        if self.weights is not None and (len(self.weights) != len(self.members) or min(self.weights) < 0
                                         or sum(self.weights) <= 0):
            raise ValueError(f"weights: one number >= 0 per member ({len(self.members)}), not all 0")
        names = self.member_names()
        if len(set(names)) != len(names):
            raise ValueError(f"members: names must differ (got {names}); set `name` on each")
        return self

    def member_names(self) -> list[str]:
        return [m.name or (Path(m.config).stem if m.config else f"member{i}") for i, m in enumerate(self.members)]


register(Kind("baseline", BaselineModel, "train.baseline:fit", BaselineClassifier,
              requirements=("scikit-learn",)))
register(Kind("transformer", TransformerModel, "train.transformer:fit", TransformerClassifier,
              requirements=("torch", "transformers", "safetensors", "onnxruntime"),
              runtimes=(AUTO, *RUNTIMES)))
# An ensemble needs what its members' kinds need (tracking reads them from the model's meta.json).
register(Kind("ensemble", EnsembleModel, "train.ensemble:fit", EnsembleClassifier, requirements=(),
              check="train.ensemble:member_configs"))


def model_section():
    """The `model:` field of a config: one of the registered sections, chosen by its `kind`."""
    return Annotated[Union[tuple(kind.params for kind in KINDS.values())], Field(discriminator="kind")]
