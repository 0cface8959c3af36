"""The model's sizes: :class:`SAMConfig` (the published 1024 px FFHQ aging model by default), the tiny test config,
and the published training options that describe a checkpoint's model. Plain data, imported by the model
(:mod:`sam.network.model`) and by the checkpoint door (:mod:`sam.network.checkpoint`) alike."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from sam.network.encoders import EncoderConfig

__all__ = ["SAMConfig", "TINY_CONFIG", "OPTS_FIELDS"]


# The published training options the model reads (sam.network.checkpoint validates them; SAMConfig.from_opts maps them).
OPTS_FIELDS = ("output_size", "input_nc", "start_from_encoded_w_plus", "start_from_latent_avg")


@dataclass(frozen=True)
class SAMConfig:
    """Every size of the model. Defaults: the published FFHQ aging model (1024 px, IR-SE50 encoders)."""

    output_size: int = 1024
    input_nc: int = 4  # RGB + age channel
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    start_from_encoded_w_plus: bool = True  # add the frozen encoder's code (SAM)
    start_from_latent_avg: bool = False  # add latent_avg to the trained encoder's output alone (pSp)
    pool_size: int = 256  # side of the ``resize=True`` output

    @property
    def n_styles(self) -> int:
        """Rows of W+ (18 at 1024 px)."""
        return 2 * int(math.log2(self.output_size)) - 2

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["encoder"]["units"] = list(d["encoder"]["units"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SAMConfig:
        d = dict(d)
        enc = dict(d.pop("encoder", {}) or {})
        if "units" in enc:
            enc["units"] = tuple(enc["units"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(encoder=EncoderConfig(**enc), **{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_opts(cls, opts: dict[str, Any]) -> SAMConfig:
        """The config a training-options dict describes (published opts + our optional ``model_config``)."""
        base = dict(opts.get("model_config") or {})
        for key in OPTS_FIELDS:
            if key in opts and opts[key] is not None:
                base[key] = opts[key]
        return cls.from_dict(base)


# A tiny model (32 px output, narrow encoders) for tests and smoke runs: seconds on a laptop CPU.
TINY_CONFIG = SAMConfig(
    output_size=32,
    style_dim=16,
    n_mlp=2,
    channel_multiplier=1,
    channel_max=16,
    encoder=EncoderConfig(base_channels=8, units=(1, 2, 2, 1), input_size=64),
    pool_size=16,
)
