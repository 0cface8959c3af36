"""The network a training run starts from (paper Sec. 4, the published training): the model of a SAM checkpoint to
go on from, or a new SAM whose encoder comes from IR-SE50 (its input convolution widened to take the age channel),
whose generator and average latent come from StyleGAN2, and whose frozen encoder comes from pSp. Every weights file
a run needs is checked first, all missing ones named at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sam.network.checkpoint import load_file, load_model
from sam.network.model import SAM

from .aux_nets import load_weights
from .losses import LossWeights
from .options import CYDRAL, RANDOM, model_config

__all__ = ["build_net", "check_weight_files", "init_weights", "weights_path"]


def weights_path(p: str | None) -> str | None:
    """A weights flag's file, or ``None`` for none / ``random``."""
    return None if p in (None, "", RANDOM) else p


def check_weight_files(o: Any) -> None:
    """Name every missing weights file at once, with its flag, before anything is built (``o``: the options)."""
    w = LossWeights.from_opts(o)
    need = [("--age_predictor_path", o.age_predictor_path)]
    if not o.checkpoint_path:
        need += [("--ir_se50_path", o.ir_se50_path), ("--stylegan_weights", o.stylegan_weights)]
        if o.start_from_encoded_w_plus:
            need.append(("--pretrained_psp_path", o.pretrained_psp_path))
    if w.id_lambda > 0 and ("--ir_se50_path", o.ir_se50_path) not in need:
        need.append(("--ir_se50_path", o.ir_se50_path))
    if max(w.lpips_lambda, w.lpips_lambda_aging, w.lpips_lambda_crop) > 0:
        need.append(("--lpips_path", o.lpips_path))
        if o.lpips_lin_path:
            need.append(("--lpips_lin_path", o.lpips_lin_path))
    missing = [f"{flag} {path}" for flag, path in need if weights_path(path) and path != CYDRAL
               and not Path(path).is_file()]
    if missing:
        raise FileNotFoundError("weights not found: " + "; ".join(missing) + " (see train/README.md for "
                                "where to get them; 'random' or --random_weights for smoke tests only)")


def build_net(opts: Any, plain_opts: Callable[[], dict[str, Any]],
              log: Callable[[str], None] | None = None) -> tuple[SAM, dict | None]:
    """The run's network, in training mode: the model of ``--checkpoint_path`` (with its checkpoint, to resume
    from) or a new one initialised by :func:`init_weights` (and ``None``). ``opts`` takes the model's settings."""
    if opts.checkpoint_path:
        ckpt = load_file(Path(opts.checkpoint_path), mmap=True)
        net = load_model(opts.checkpoint_path, device="cpu", mmap=False)
        # the model of the checkpoint, trained with this run's flags
        for key in ("start_from_encoded_w_plus", "start_from_latent_avg"):
            setattr(opts, key, bool(getattr(net.config, key)))
        opts.output_size = net.config.output_size
        net.opts = {**plain_opts(), "model_config": net.config.to_dict()}
        if log is not None:
            log(f"Loaded SAM checkpoint {opts.checkpoint_path}")
        return net.train(), ckpt
    config = model_config(opts)
    opts.output_size = config.output_size
    net = SAM(config, opts=plain_opts())
    init_weights(net, opts, log)
    return net.train(), None


def init_weights(net: SAM, opts: Any, log: Callable[[str], None] | None = None) -> None:
    """Encoder from IR-SE50 (input conv widened to 4 channels), generator + latent_avg from StyleGAN2,
    frozen encoder from pSp, as in the published training."""
    ir = weights_path(opts.ir_se50_path)
    if ir:
        state = torch.load(ir, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if k.startswith(("input_layer.", "body."))}
        w = state["input_layer.0.weight"]
        if w.shape[1] != net.config.input_nc:  # widen RGB -> RGB + age; the extra slice random
            wide = torch.randn(w.shape[0], net.config.input_nc, *w.shape[2:])
            wide[:, : w.shape[1]] = w
            state["input_layer.0.weight"] = wide
        load_weights(net.encoder, state, ir, strict=False)
        if log is not None:
            log(f"Encoder initialised from {ir}")
    sg = weights_path(opts.stylegan_weights)
    if sg:
        ckpt = torch.load(sg, map_location="cpu", weights_only=True)
        load_weights(net.decoder, ckpt["g_ema"], sg)
        avg = ckpt.get("latent_avg")
        if avg is None:
            avg = net.decoder.mean_latent()
        net.latent_avg = avg.detach().float().reshape(1, -1).repeat(net.config.n_styles, 1)
        if log is not None:
            log(f"Generator initialised from {sg}")
    else:
        with torch.no_grad():
            net.latent_avg = net.decoder.mean_latent(1024).repeat(net.config.n_styles, 1)
    psp = weights_path(opts.pretrained_psp_path)
    if psp and net.config.start_from_encoded_w_plus:
        state = torch.load(psp, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        load_weights(net.pretrained_encoder, enc, psp)
        if log is not None:
            log(f"Frozen pSp encoder from {psp}")
