"""The model kinds, each declared once: its ``model:`` config section, trainer, loader, requirements and runtimes.

Config validation, the trainer table, the logged model's pip requirements and ``newstag tag --runtime`` all read
this registry, so adding a kind is a trainer module plus its config section and one ``register`` line here
(README "Adding a model kind").  Trainers are named as ``module:function`` and imported only when their kind
trains, so validating a baseline config never imports torch.  The loader classes live in ``classifier.py``:
MLflow copies that file alone into each model, so it keeps its own dispatch on ``meta["kind"]``
(``classifier.LOADERS``), which a test holds equal to this registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from train import classifier


class Strict(BaseModel):
    """Every config section refuses unknown keys (a typo is an error, not a silent default) and is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Kind:
    name: str
    params: type[Strict]  # the `model:` section of a config of this kind
    trainer: str  # "module:function" with fit(cfg, splits, model_dir, log_step) -> classifier
    loader: type  # the class in classifier.py that loads a model directory of this kind
    requirements: tuple[str, ...]  # pip distributions its logged model needs beyond COMMON_REQUIREMENTS
    runtimes: tuple[str, ...] = ()  # inference runtimes it can switch between at load time

    def fit(self, *args, **kwargs):
        module, _, function = self.trainer.partition(":")
        return getattr(importlib.import_module(module), function)(*args, **kwargs)


# What classifier.py imports at module level: every logged model needs these.
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
    calibrate: bool = Field(False, description="isotonic/sigmoid calibration of probabilities on train folds")
    context_weight: float = Field(0.5, gt=0, description="scale of the context features against the sentence's own")


class TransformerModel(Strict):
    kind: Literal["transformer"]
    name_or_path: str = "sentence-transformers/all-MiniLM-L6-v2"
    pooling: Literal["cls", "mean"] = "mean"
    max_length: int = Field(128, ge=8, le=4096)
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    epochs: float = Field(4, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    class_weights: Literal["balanced"] | None = "balanced"
    early_stopping_patience: int | None = Field(2, ge=1)
    runtime: Literal[classifier.RUNTIMES] = Field(
        "torch", description="inference runtime of the logged model (torch when there is no ONNX graph)")
    temperature_scaling: bool = True
    export_onnx: bool = Field(True, description="also ship ONNX fp32/int8 graphs (false, or a failed export: torch only)")


register(Kind("baseline", BaselineModel, "train.baseline:fit", classifier.BaselineClassifier,
              requirements=("scikit-learn",)))
register(Kind("transformer", TransformerModel, "train.transformer:fit", classifier.TransformerClassifier,
              requirements=("torch", "transformers", "safetensors", "onnxruntime"), runtimes=classifier.RUNTIMES))


def model_section():
    """The `model:` field of a config: one of the registered sections, chosen by its `kind`."""
    return Annotated[Union[tuple(kind.params for kind in KINDS.values())], Field(discriminator="kind")]
