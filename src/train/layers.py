"""Which of a pretrained encoder's blocks a run keeps, which of them learn, and at what rate.

Each takes the config key it serves, so that an encoder these cannot handle is named in the error as that key's.
"""

from __future__ import annotations

import torch

from train.config import ConfigError


def blocks(encoder, key: str, layers: int = 0) -> torch.nn.ModuleList:
    """The encoder's stack of blocks (the ModuleList as long as its config's layer count), which `key` asks
    `layers` of."""
    stack = next((m for m in encoder.modules() if isinstance(m, torch.nn.ModuleList)
                  and len(m) == encoder.config.num_hidden_layers), None)
    if stack is None:
        raise ConfigError(f"{key}: cannot find this encoder's stack of layers; leave {key} at its default")
    if layers > len(stack):
        raise ConfigError(f"{key}: {layers} is more than the {len(stack)} layers this encoder has")
    return stack


def keep_lower(encoder, layers: int | None) -> None:
    """Drop every block above the lowest `layers` (None: keep all), in the module and in its config, so that the
    encoder saves and loads as the shorter model it now is."""
    if layers is None:
        return
    stack = blocks(encoder, "model.encoder_layers", layers)
    del stack[layers:]
    encoder.config.num_hidden_layers = layers


def freeze_lower(encoder, layers: int) -> None:
    """Embeddings and the lowest `layers` blocks stop learning (0: all learn): a faster step on two cores."""
    if not layers:
        return
    stack = blocks(encoder, "model.freeze_layers", layers)
    for module in (getattr(encoder, "embeddings", None) or encoder.get_input_embeddings(), *stack[:layers]):
        module.requires_grad_(False)


def layer_learning_rates(model, learning_rate: float, decay: float) -> dict[str, float]:
    """Each trainable parameter's learning rate: the head's is `learning_rate`, block k of N learns at
    `learning_rate * decay ** (N - k)`; the encoder's parameters outside its blocks (embeddings, a shared relative
    position bias) learn as the lowest block does."""
    stack = blocks(model.encoder, "model.layer_lr_decay")
    depth = {id(p): len(stack) - k for k, block in enumerate(stack) for p in block.parameters()}
    encoder = {id(p) for p in model.encoder.parameters()}
    rates = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            below = depth.get(id(param), len(stack) if id(param) in encoder else 0)
            rates[name] = learning_rate * decay ** below
    return rates
