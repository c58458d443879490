"""One validated training config.

A config file may ``extends:`` another (path relative to itself); mappings are merged key by key, so an
experiment file holds only what differs.  ``--set a.b=value`` overrides are applied after merging and before
validation, so a typo in an override is refused exactly like a typo in a file.  Nothing has a hidden default
that is not visible in the resolved config logged with every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from train import kinds
from train.kinds import Strict

LABELS = ("claim", "attributed_quote", "unverified", "official_response")


class ConfigError(Exception):
    """A user error in a config file or override; the CLI prints it without a traceback (exit 2)."""


class DataConfig(Strict):
    path: str = "data/corpus/sentences.jsonl"
    use_split_field: bool = Field(True, description="take train/dev/test from a `split` field when every row has one")
    dev_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    train_fraction: float = Field(1.0, gt=0, le=1.0,
                                  description="subsample of the eval origin's train articles (learning curves)")
    eval_origin: str = Field("real", description="rows of this origin form dev/ and test/; others are logged apart")
    train_sources: dict[str, float] = Field(
        default_factory=lambda: {"real": 1.0, "synthetic": 1.0},
        description="origin -> loss weight of its train sentences; 0 (or absent) leaves an origin out of training")

    @model_validator(mode="after")
    def _weights(self) -> DataConfig:
        bad = {k: v for k, v in self.train_sources.items() if v < 0}
        if bad:
            raise ValueError(f"train_sources weights must be >= 0, got {bad}")
        if not any(v > 0 for v in self.train_sources.values()):
            raise ValueError("train_sources: at least one origin needs a weight > 0")
        return self


class ContextConfig(Strict):
    """What of its article a sentence is read with: the same at train, evaluate, tag and serve time."""

    window: int = Field(0, ge=0, le=8, description="sentences before and after the target (0: the sentence alone)")
    neighbour_words: int = Field(0, ge=0, description="words of the neighbours kept on each side, those nearest "
                                 "the target (0: whole sentences): shorter inputs train and tag faster")
    title: bool = Field(False, description="give the article title when the input has one")
    title_dropout: float = Field(0.0, ge=0, le=1, description="share of train articles shown without their title")
    quotes: bool = Field(False, description="mark a sentence that starts inside a quotation an earlier one opened")
    quote_spans: bool = Field(False, description="label the sentences of one multi-sentence quotation together")
    chunk_tokens: int = Field(0, ge=0, le=4096, description="transformer: read each article in inputs of up to this "
                              "many tokens (title + consecutive sentences, `window` more at each edge), each sentence "
                              "scored from its own tokens; 0: one input a sentence (target, title + neighbours)")

    @model_validator(mode="after")
    def _chunks(self) -> ContextConfig:
        if self.chunk_tokens and self.chunk_tokens < 64:
            raise ValueError(f"chunk_tokens: {self.chunk_tokens} leaves no room for sentences; use 0 or at least 64")
        if self.chunk_tokens and self.neighbour_words:
            raise ValueError("neighbour_words cuts the neighbours of a one-sentence input; chunks "
                             "(chunk_tokens) read them whole: set one of the two to 0")
        return self

    def for_model(self) -> dict:
        """What the logged model keeps (meta.json) so that every caller reads articles the same way (`chunk_tokens`
        only where set: a model without it reads one input a sentence)."""
        return {"window": self.window, "neighbour_words": self.neighbour_words, "title": self.title,
                "quotes": self.quotes, "quote_spans": self.quote_spans,
                **({"chunk_tokens": self.chunk_tokens} if self.chunk_tokens else {})}


ModelConfig = kinds.model_section()


class TrackingConfig(Strict):
    experiment: str = "newstag"
    registered_model: str | None = "newstag"
    alias: str | None = Field(None, description="alias set on the new version, e.g. candidate")
    run_name: str | None = None
    log_model: bool = True


class EvalConfig(Strict):
    bootstrap: int = Field(1000, ge=0, description="resamples for the test confidence intervals; 0 turns them off")
    min_score: float | None = Field(None, ge=0, le=1, description="below this score a sentence needs review")


class Config(Strict):
    seed: int = 13
    labels: tuple[str, ...] = LABELS
    data: DataConfig = DataConfig()
    context: ContextConfig = ContextConfig()
    model: ModelConfig
    tracking: TrackingConfig = TrackingConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _chunks_need_an_encoder(self) -> Config:
        if self.context.chunk_tokens and self.model.kind != "transformer":
            raise ValueError(f"context.chunk_tokens: only transformer models read articles in chunks, not "
                             f"{self.model.kind}; use 0")
        return self

    @model_validator(mode="after")
    def _labels_unique(self) -> Config:
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ValueError("labels must be at least two distinct names")
        return self


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: `extends` forms a cycle")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, not {type(raw).__name__}")
    _members_from(raw, path.parent)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    return _merge(_read_yaml(path.parent / parent, (*seen, path)), raw)


def _members_from(raw: dict, folder: Path) -> None:
    """An ensemble member's `config` is relative to the file that names it, as `extends` is (absolute after this)."""
    members = (raw.get("model") or {}).get("members") if isinstance(raw.get("model"), dict) else None
    for member in members if isinstance(members, list) else ():
        if isinstance(member, dict) and isinstance(member.get("config"), str):
            member["config"] = str(folder / member["config"])


def apply_override(tree: dict, assignment: str) -> dict:
    """Apply one ``a.b.c=value`` override; the value is parsed as YAML (``2e-5``, ``null``, ``[1, 3]``)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    parts = key.strip().split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment!r}: {'.'.join(parts[: i + 1])} is not a mapping")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML: {err}") from None
    return tree


def _describe(err: dict) -> tuple[str, str]:
    loc = [str(p) for p in err["loc"]]
    # Drop the discriminator tag pydantic inserts ("model.baseline.C" -> "model.C").
    if len(loc) > 1 and loc[0] == "model" and loc[1] in kinds.KINDS:
        loc.pop(1)
    key = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return key, "unknown key"
    if err["type"] == "union_tag_invalid":
        return key, f"unknown model kind {err['input'].get('kind')!r}; known: {', '.join(kinds.KINDS)}"
    if err["type"] == "union_tag_not_found":
        return key, f"needs a `kind` ({' or '.join(kinds.KINDS)})"
    return key, f"{err['msg']} (got {err.get('input')!r})"


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    tree = _read_yaml(Path(path))
    for assignment in overrides:
        apply_override(tree, assignment)
    return _validate(tree, str(path))


def member_config(path: str | Path, parent: Config, where: str) -> Config:
    """A config that an ensemble trains: its own model, context and ``data.train_sources``; the ensemble's seed,
    labels and the rest of its data section, so that every member trains on the same articles and none on dev/test."""
    try:
        tree = _read_yaml(Path(path))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    data = parent.data.model_dump(mode="json")
    own = (tree.get("data") or {}).get("train_sources")
    if own is not None:
        data["train_sources"] = own
    tree.update(seed=parent.seed, labels=list(parent.labels), data=data)
    cfg = _validate(tree, f"{where} ({path})")
    if cfg.model.kind == "ensemble":
        raise ConfigError(f"{where} ({path}): an ensemble's member cannot itself be an ensemble")
    return cfg


def _validate(tree: dict, where: str) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        problems = "\n".join(f"  {key}: {why}" for key, why in map(_describe, exc.errors()))
        raise ConfigError(f"{where}: invalid config\n{problems}") from None


def resolved_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(cfg: Config) -> dict[str, Any]:
    """Dotted params for MLflow (``model.C``), the same names for every model kind where they mean the same."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):  # an ensemble's members
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        else:
            out[prefix] = ",".join(map(str, value)) if isinstance(value, list) else value

    walk("", cfg.model_dump(mode="json"))
    return out
