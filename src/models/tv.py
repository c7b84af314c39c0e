"""torchvision's ImageNet architectures by name, for our number of classes: from scratch, or from torchvision's
pretrained weights (`weights`: DEFAULT, a name such as IMAGENET1K_V1, or a local file of them) with the classifier
started afresh."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch import Tensor, nn


class _RepeatChannels(nn.Module):
    """Feeds grey images to a 3-channel network."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.output_layer = f"net.{net.output_layer}"

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.expand(-1, 3, -1, -1))


def _class_layers(net: nn.Module, num_classes: int) -> list[str]:
    """The layers that give num_classes outputs, in the order the network registers them: torchvision names its
    classifier fc, classifier.1, heads.head, ... and registers it last (an Inception's auxiliary heads come before)."""
    return [name for name, m in net.named_modules()
            if (isinstance(m, nn.Linear) and m.out_features == num_classes)
            or (isinstance(m, nn.Conv2d) and m.out_channels == num_classes)]  # SqueezeNet's classifier is a conv


def pretrained_state(name: str, weights: str) -> dict[str, Tensor]:
    """torchvision's weights for the architecture `name`: an entry of its weights enum (DEFAULT, IMAGENET1K_V1, ...;
    downloaded once into torch's hub cache), or a local file holding a state dict (.pth, .pt)."""
    import torchvision

    if weights.endswith((".pth", ".pt", ".bin")) or "/" in weights or Path(weights).is_file():
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ValueError(f"model.weights={weights}: no such file (give a file of torchvision weights, a state "
                             f"dict saved with torch.save)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - not a torch file, truncated, pickled objects
            raise ValueError(f"model.weights={weights} is not a readable file of weights ({type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:200]})") from None
        for key in ("state_dict", "model"):  # what training scripts often wrap around the weights
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ValueError(f"model.weights={weights} holds no state dict (a mapping of parameter names to tensors)")
        return state
    enum = torchvision.models.get_model_weights(name)
    if weights not in enum.__members__:
        raise ValueError(f"model.weights={weights}: {name} has no such weights; choose one of "
                         f"{', '.join(enum.__members__)}, or give a local file of weights "
                         f"(model.weights=/path/to/weights.pth)")
    chosen = enum[weights]
    try:  # torch.hub announces each download on stderr, which would come before an error's one line
        with contextlib.redirect_stderr(io.StringIO()):
            return chosen.get_state_dict(progress=False, check_hash=True)
    except OSError as e:  # no network (urllib's URLError is an OSError), or a refused download
        file = chosen.url.rsplit("/", 1)[-1]
        raise ValueError(f"model.weights={weights}: could not download {name}'s {chosen.name} weights from "
                         f"{chosen.url} ({type(e).__name__}: {getattr(e, 'reason', e)}). Without network, fetch that "
                         f"file on another machine and give model.weights=<path to {file}>.") from None


def load_pretrained(net: nn.Module, state: dict[str, Tensor], output_layer: str, class_layers: list[str],
                    weights: str) -> None:
    """Every weight of `state` into `net` but the classifier's (ours has num_classes rows and starts afresh); an
    auxiliary classifier whose size differs starts afresh too. Any other difference is an error."""
    own = net.state_dict()
    fresh = tuple(f"{layer}." for layer in class_layers)
    keep = {k: v for k, v in state.items() if not k.startswith(f"{output_layer}.")
            and not (k.startswith(fresh) and k in own and own[k].shape != v.shape)}
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in keep.items()
             if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in keep and not k.startswith(fresh)]
    unexpected = [k for k in keep if k not in own]
    if wrong or missing or unexpected:
        what = ("shapes differ: " + ", ".join(wrong[:3]) if wrong else
                "missing " + ", ".join(missing[:3]) if missing else "unknown " + ", ".join(unexpected[:3]))
        raise ValueError(f"model.weights={weights} does not fit this {type(net).__name__} ({what}): give weights of "
                         f"the architecture model.name names")
    net.load_state_dict(keep, strict=False)


def torchvision_model(in_channels: int, num_classes: int, name: str = "resnet18",
                      weights: str | None = None) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(f"model.name={name} is not a torchvision classification model; choose one of: "
                         + ", ".join(sorted(available)))
    if in_channels not in (1, 3):
        raise ValueError(f"torchvision models take 1 or 3 channels, not {in_channels}")
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    layers = _class_layers(net, num_classes)
    net.output_layer = layers[-1]
    if weights:
        load_pretrained(net, pretrained_state(name, str(weights)), net.output_layer, layers, str(weights))
    return _RepeatChannels(net) if in_channels == 1 else net
