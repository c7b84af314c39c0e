"""The networks. A model config (conf/model/) is a network's constructor arguments plus the options below, which
are how the network runs rather than what it is; `build_network` is the one place that tells them apart."""
from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from torch import nn

#: model-config keys that are not the network's arguments: torch.compile on or off, its mode and backend
RUN_OPTIONS = ("compile", "compile_mode", "compile_backend")


def network_config(node) -> dict:
    """The model config without RUN_OPTIONS: what the network's constructor takes."""
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return {k: v for k, v in node.items() if k not in RUN_OPTIONS}


def build_network(node, **kwargs: Any) -> nn.Module:
    """The network a model config describes; kwargs are what the data dictates (classes, vocabulary sizes)."""
    return instantiate(network_config(node), **kwargs)
