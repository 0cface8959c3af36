"""The training loop: set-up (the network it starts from: :mod:`train.start`), the real and cycle passes,
optimisation, logging, validation, checkpoints.

Runs as one process (CPU or one GPU) or as several under ``torchrun`` (DistributedDataParallel with a
DistributedSampler; rank 0 alone logs, validates and writes files).

Each step (paper Sec. 3.3, the published ``coach_aging.py``):
1. the batch's input ages are estimated by the age regressor;
2. with probability ``no_aging_prob`` (1/3) the target ages are the input ages, else sampled (``--target_age``);
3. real pass: ``y_hat = SAM([x, target/100])``, losses against ``x`` -> backward;
4. cycle pass (``cycle_lambda > 0``): ``y_rec = SAM([y_hat.detach(), input/100])``, the same losses against
   ``x`` scaled by ``cycle_lambda`` -> backward (the paper's cycle: back to the input age);
5. optimizer step (Ranger or Adam over the encoder, plus the generator with ``--train_decoder``).

Exact resume: beside each checkpoint (``*.optim.pt``) go the optimizer (Ranger's Lookahead slow weights
included), the AMP scaler, the epoch and position in it, and every process' random streams (``train.state``);
the model's BatchNorm statistics are in the checkpoint. A resumed run then takes the steps an uninterrupted one
would have taken. ``--amp fp16`` (CUDA, with gradient scaling) or ``--amp bf16`` (CPU or CUDA) run the SAM
forward under autocast; the loss networks, the weights and the checkpoints stay float32.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from sam.network.model import add_age_channel

from . import state as rng_state
from .aux_nets import AuxConfig, build_age_net, build_arcface, build_lpips
from .data import AgeSampler, EpochSampler, FaceFolder, prepare_aligned, seed_worker
from .losses import LossWeights, SAMLoss
from .start import build_net, check_weight_files, weights_path

__all__ = ["Coach", "TrainingDivergedError", "optimizer_path"]


class TrainingDivergedError(RuntimeError):
    """A loss or gradient became NaN / infinite."""


def optimizer_path(checkpoint: str | Path) -> Path:
    """Where the optimizer state of a checkpoint is kept: ``iteration_N.pt`` -> ``iteration_N.optim.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".optim.pt")


def _log(msg: str) -> None:
    print(msg, flush=True)


class Coach:
    def __init__(self, opts):
        self.opts = opts
        # ---- distribution
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.distributed = self.world_size > 1
        self.device = self._pick_device(opts.device)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0
        self.amp_dtype = self._amp_dtype(opts.amp)
        self.use_scaler = self.amp_dtype == torch.float16  # float16 needs gradient scaling; bfloat16 does not

        torch.manual_seed(opts.seed)  # networks: the same random initialisation on every rank
        random.seed(opts.seed)
        np.random.seed(opts.seed + self.rank)
        self.step_rng = random.Random(opts.seed)  # same on every rank: the no-aging draw of each step
        self.age_sampler = AgeSampler(opts.target_age, seed=opts.seed + 1000 * self.rank)

        self.exp_dir = Path(opts.exp_dir)
        self.checkpoint_dir = self.exp_dir / "checkpoints"
        self.global_step = 0
        self.epoch = 0  # data position: epoch and batches of it taken (each step takes one)
        self.batch_in_epoch = 0
        self.best_val_loss: float | None = None

        # ---- networks
        check_weight_files(self.opts)
        self.net, resume = build_net(self.opts, self._plain_opts, log=_log if self.is_main else None)
        if self.distributed and opts.sync_bn:  # before the optimizer takes the parameters
            from .sync_bn import convert_batchnorm

            convert_batchnorm(self.net.encoder)
        self.net.to(self.device)
        self.aux_cfg = AuxConfig.tiny() if opts.aux_size == "tiny" else AuxConfig()
        self.loss_weights = LossWeights.from_opts(opts)
        self.criterion = self._build_criterion()
        self.optimizer = self._build_optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_scaler)

        # ---- data
        self.train_loader, self.test_loader, self.train_sampler = self._build_data()
        self.batches_per_epoch = self.train_sampler.per_rank // opts.batch_size

        # ---- the steps' random streams: per rank (noise differs), replaced by the saved ones on resume
        torch.manual_seed(opts.seed + 7919 * self.rank)
        if resume is not None:
            self._resume(resume)

        self.model = self.net
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=ids)

        # ---- outputs (rank 0)
        self.logger = None
        if self.is_main:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            (self.exp_dir / "logs").mkdir(parents=True, exist_ok=True)
            with open(self.exp_dir / "opt.json", "w") as f:
                json.dump(self._plain_opts(), f, indent=4, sort_keys=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.logger = SummaryWriter(log_dir=str(self.exp_dir / "logs"))
            except ImportError:  # tensorboard not installed: text log and image files only
                _log("tensorboard is not installed: scalars go to the console and timestamp.txt only")

    # ------------------------------------------------------------------------------------------------------------
    # set-up helpers

    def _build_criterion(self) -> SAMLoss:
        """Every SAM loss term, with the auxiliary networks the non-zero weights need."""
        opts, w = self.opts, self.loss_weights
        need_lpips = max(w.lpips_lambda, w.lpips_lambda_aging, w.lpips_lambda_crop) > 0
        with torch.random.fork_rng(devices=[]):  # random loss nets (tests): the same in a fresh and a resumed run
            torch.manual_seed(opts.seed + 1)
            arcface = build_arcface(weights_path(opts.ir_se50_path), self.aux_cfg) if w.id_lambda > 0 else None
            age_net = build_age_net(weights_path(opts.age_predictor_path), self.aux_cfg)  # input ages are always needed
            lpips = build_lpips(weights_path(opts.lpips_path), opts.lpips_lin_path) if need_lpips else None
        return SAMLoss(w, arcface, age_net, lpips, self.aux_cfg.id_input_size).to(self.device)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        """Adam or Ranger over the trained encoder (and the decoder with ``--train_decoder``); the frozen encoder
        stays frozen."""
        opts = self.opts
        self.net.pretrained_encoder.requires_grad_(False)
        self.net.decoder.requires_grad_(bool(opts.train_decoder))
        params = list(self.net.encoder.parameters())
        if opts.train_decoder:
            params += list(self.net.decoder.parameters())
        if opts.optim_name == "adam":
            return torch.optim.Adam(params, lr=opts.learning_rate)
        from pytorch_optimizer import Ranger

        return Ranger(params, lr=opts.learning_rate)

    def _amp_dtype(self, amp: str | bool | None) -> torch.dtype | None:
        """``--amp``: None (float32), ``fp16`` (CUDA only; ignored with a message elsewhere) or ``bf16``."""
        if amp in (None, False, "", "none"):
            return None
        if amp in (True, "fp16"):
            if self.device.type != "cuda":
                if self.is_main:
                    _log("--amp fp16 ignored: float16 autocast with gradient scaling is used on CUDA only "
                         "(--amp bf16 runs on the CPU)")
                return None
            return torch.float16
        if amp == "bf16":
            if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                raise ValueError("--amp bf16: this GPU has no bfloat16 support; use --amp fp16")
            return torch.bfloat16
        raise ValueError(f"--amp {amp!r}: expected fp16 or bf16")

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @staticmethod
    def _pick_device(name: str) -> torch.device:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(name)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("--device cuda but no CUDA device is available")
            if dev.index is None:
                dev = torch.device("cuda", local_rank if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0)
            torch.cuda.set_device(dev)
        return dev

    def _plain_opts(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self.opts).items() if isinstance(v, (str, int, float, bool, type(None)))}

    def _data_layout(self) -> dict[str, int]:
        """What the saved data position means: it carries over only to a run with the same layout."""
        return {"n_images": self.train_sampler.n, "batch_size": self.opts.batch_size, "world_size": self.world_size,
                "seed": self.opts.seed, "flip": int(self.train_sampler.flip)}

    def _resume(self, ckpt: dict) -> None:
        """Step, optimizer, scaler, data position and random streams of the checkpoint's side file."""
        self.global_step = int(ckpt.get("global_step", 0))
        self.best_val_loss = ckpt.get("best_val_loss")
        opt_file = optimizer_path(self.opts.checkpoint_path)
        if not opt_file.is_file():
            if self.is_main:
                _log(f"Starting at step {self.global_step}; no optimizer state ({opt_file.name}) beside the "
                     "checkpoint")
            return
        side = torch.load(opt_file, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(side["optimizer"])
        if "scaler" in side and self.use_scaler:
            self.scaler.load_state_dict(side["scaler"])
        exact = side.get("data_layout") == self._data_layout() and len(side.get("rng") or []) == self.world_size
        if exact:
            self.epoch, self.batch_in_epoch = int(side["epoch"]), int(side["batch_in_epoch"])
            rng_state.restore(side["rng"][self.rank], self.device, self.age_sampler.rng, self.step_rng)
        else:  # another layout (or an older side file): fresh streams, a new epoch
            self.epoch = int(side.get("epoch", self.global_step // max(self.batches_per_epoch, 1))) + 1
            for _ in range(self.global_step):  # the same no-aging draws as an uninterrupted run
                self.step_rng.random()
            torch.manual_seed(self.opts.seed + 7919 * self.rank + self.global_step)
            self.age_sampler.rng = np.random.default_rng([self.opts.seed + 1000 * self.rank, self.global_step])
        if self.is_main:
            how = ("exactly (data position and random state restored)" if exact else
                   "with fresh random streams and a new epoch (the data layout or process count changed, or the "
                   "side file predates exact resume): statistically, not bit-for-bit, like an uninterrupted run")
            _log(f"Resuming at step {self.global_step} with the optimizer state of {opt_file}, {how}")

    def _build_data(self):
        opts = self.opts
        size = self.net.config.encoder.input_size
        train_dir, test_dir = opts.train_dir, opts.test_dir
        if opts.align:
            if self.is_main:
                train_dir = prepare_aligned(train_dir, self.exp_dir / "aligned" / "train", size)
                if test_dir:
                    test_dir = prepare_aligned(test_dir, self.exp_dir / "aligned" / "test", size)
            if self.distributed:
                dist.barrier()
            train_dir = self.exp_dir / "aligned" / "train"
            test_dir = self.exp_dir / "aligned" / "test" if test_dir else None
        train_set = FaceFolder(train_dir, size)
        sampler = EpochSampler(len(train_set), opts.seed, flip=not opts.no_flip, rank=self.rank,
                               world_size=self.world_size)
        g = torch.Generator().manual_seed(opts.seed)  # worker seeds: drawn from here, not from the global stream
        train_loader = DataLoader(train_set, batch_size=opts.batch_size, sampler=sampler,
                                  num_workers=opts.workers, drop_last=True, worker_init_fn=seed_worker,
                                  generator=g, pin_memory=self.device.type == "cuda",
                                  persistent_workers=opts.workers > 0)
        if sampler.per_rank // opts.batch_size == 0:
            raise ValueError(f"{len(train_set)} training images are fewer than one batch of {opts.batch_size}"
                             + (f" per process ({self.world_size} processes)" if self.distributed else ""))
        test_loader = None
        if test_dir and self.is_main:
            test_set = FaceFolder(test_dir, size)
            test_loader = DataLoader(test_set, batch_size=opts.test_batch_size, shuffle=False,
                                     num_workers=opts.test_workers, drop_last=False)
        if self.is_main:
            _log(f"{len(train_set)} training images" + (f", {len(test_loader.dataset)} test images"
                                                       if test_loader else ", no test folder (no validation)"))
        return train_loader, test_loader, sampler

    # ------------------------------------------------------------------------------------------------------------
    # one step

    def _forward(self, rgb: torch.Tensor, ages: torch.Tensor, model=None):
        """SAM on ``rgb`` at ``ages`` (/100). The frozen encoder's code is computed without a graph."""
        model = model or self.model
        x4 = add_age_channel(rgb, ages * 100.0)
        pre = None
        if self.net.config.start_from_encoded_w_plus:
            with torch.no_grad():
                pre = self.net.pretrained_encoder(rgb)
        with self._autocast():
            y_hat, latent = model(x4, return_latents=True, pretrained_codes=pre,
                                  randomize_noise=not self.opts.fixed_noise)
        return y_hat.float(), latent.float()

    def _latent_avg(self):
        c = self.net.config
        return self.net.latent_avg if (c.start_from_encoded_w_plus or c.start_from_latent_avg) else None

    def compute_losses(self, x, no_aging: bool, backward: bool = True, model=None):
        """Both passes on a batch; returns (loss dict, y_hat, y_rec, target ages, input ages)."""
        with torch.no_grad():
            input_ages = self.criterion.estimate_ages(x) / 100.0
        if no_aging:
            target_ages = input_ages.clone()
        else:
            target_ages = (self.age_sampler(x.shape[0]) / 100.0).to(x.device)
        y_hat, latent = self._forward(x, target_ages, model)
        loss, logs, _ = self.criterion(x, x, y_hat, latent, target_ages, input_ages, no_aging,
                                       self._latent_avg(), "real")
        self._check_finite(loss, logs)
        if backward:
            self.scaler.scale(loss).backward()
        total = float(loss.detach())
        y_rec = None
        if self.loss_weights.cycle_lambda > 0:
            y_in = y_hat.detach()
            cycle_ages = input_ages
            if self.opts.cycle_age == "estimated_output":  # what the published code does
                with torch.no_grad():
                    cycle_ages = self.criterion.estimate_ages(y_in) / 100.0
            y_rec, latent_c = self._forward(y_in, cycle_ages, model)
            loss_c, logs_c, _ = self.criterion(x, x, y_rec, latent_c, cycle_ages, target_ages, no_aging,
                                               self._latent_avg(), "cycle")
            self._check_finite(loss_c, logs_c)
            if backward:
                self.scaler.scale(loss_c).backward()
            logs.update(logs_c)
            total += float(loss_c.detach())
        logs["loss"] = total
        return logs, y_hat, y_rec, target_ages, input_ages

    def _check_finite(self, loss: torch.Tensor, logs: dict[str, float]) -> None:
        if not torch.isfinite(loss):
            bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
            raise TrainingDivergedError(f"step {self.global_step + 1}: the loss is not finite ({bad or logs}); "
                                        "lower --learning_rate or check the data and weights")

    def _check_grads(self) -> None:
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().float().norm() for g in grads]).sum()):
            raise TrainingDivergedError(f"step {self.global_step + 1}: NaN / infinite gradients; "
                                        "lower --learning_rate, or try --amp bf16 / no --amp")

    def train_step(self, x: torch.Tensor) -> tuple[dict[str, float], torch.Tensor, torch.Tensor | None, Any]:
        self.net.train()
        self.net.pretrained_encoder.eval()  # frozen: its BatchNorm keeps the pretrained statistics
        if not self.opts.train_decoder:
            self.net.decoder.eval()
        self.optimizer.zero_grad(set_to_none=True)
        no_aging = self.step_rng.random() <= self.opts.no_aging_prob
        logs, y_hat, y_rec, target, _ = self.compute_losses(x, no_aging)
        if self.use_scaler:
            self.scaler.unscale_(self.optimizer)  # inf / NaN steps are skipped by the scaler
        else:
            self._check_grads()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        return logs, y_hat, y_rec, target

    # ------------------------------------------------------------------------------------------------------------
    # loop

    def train(self) -> None:
        opts = self.opts
        if self.global_step >= opts.max_steps:
            _log(f"Nothing to do: step {self.global_step} >= --max_steps {opts.max_steps}")
            return
        t0, steps0 = time.perf_counter(), self.global_step
        while self.global_step < opts.max_steps:
            self.train_sampler.set_epoch(self.epoch, min(self.batch_in_epoch * opts.batch_size,
                                                         self.train_sampler.per_rank))
            for x, _ in self.train_loader:
                x = x.to(self.device, non_blocking=True).float()
                logs, y_hat, y_rec, target = self.train_step(x)
                self.batch_in_epoch += 1
                step = self.global_step
                saves = step % opts.save_interval == 0 or step == opts.max_steps
                validates = bool(opts.test_dir) and (step % opts.val_interval == 0 or step == opts.max_steps)
                rngs = self._gather_rng() if saves or validates else None  # a collective: every rank takes part
                if self.is_main:
                    if step % opts.image_interval == 0 or step == 1:
                        self.log_images("images/train/faces", x, y_hat, y_rec, target)
                    if step % opts.board_interval == 0 or step == opts.max_steps:
                        rate = (step - steps0) / max(time.perf_counter() - t0, 1e-9)
                        extra = {"steps_per_s": rate}
                        if self.device.type == "cuda":  # peak GPU memory of this process so far
                            extra["cuda_peak_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                        self.log_metrics({**logs, **extra}, "train")
                    val_logs = None
                    if self.test_loader is not None and (step % opts.val_interval == 0 or step == opts.max_steps):
                        val_logs = self.validate()
                        if self.best_val_loss is None or val_logs["loss"] < self.best_val_loss:
                            self.best_val_loss = val_logs["loss"]
                            self.checkpoint_me(val_logs, is_best=True, rngs=rngs)
                    if saves:
                        self.checkpoint_me(val_logs or logs, is_best=False, rngs=rngs)
                if step >= opts.max_steps:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
        if self.distributed:
            print(f"rank {self.rank}/{self.world_size} finished at step {self.global_step}", flush=True)
            dist.barrier()
        if self.is_main:
            rate = (self.global_step - steps0) / max(time.perf_counter() - t0, 1e-9)
            _log(f"Finished training at step {self.global_step} ({rate:.3f} steps/s)")
            if self.logger is not None:
                self.logger.close()

    def _gather_rng(self) -> list[dict[str, Any]]:
        """Every rank's random streams (an all-gather under torchrun), for the checkpoint rank 0 writes."""
        mine = rng_state.capture(self.device, self.age_sampler.rng, self.step_rng)
        if not self.distributed:
            return [mine]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, mine)
        return out

    def _local_rng(self) -> list[dict[str, Any]]:
        """Without a gathered list: this process' streams when it is the only one (else none: not exact)."""
        if self.distributed:
            return []
        return [rng_state.capture(self.device, self.age_sampler.rng, self.step_rng)]

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Losses on the test folder (rank 0, eval mode, fixed random streams so that runs are comparable; the
        training streams are left as they were)."""
        self.net.eval()
        rng = random.Random(self.opts.seed + 12345)
        state = self.age_sampler.rng
        self.age_sampler.rng = np.random.default_rng(self.opts.seed + 12345)
        agg: dict[str, list[float]] = {}
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.opts.seed + 12345)  # the noise of validation
                for i, (x, _) in enumerate(self.test_loader):
                    if self.opts.val_max_batches is not None and i >= self.opts.val_max_batches:
                        break
                    x = x.to(self.device).float()
                    no_aging = rng.random() <= self.opts.no_aging_prob
                    logs, y_hat, y_rec, target, _ = self.compute_losses(x, no_aging, backward=False, model=self.net)
                    for k, v in logs.items():
                        agg.setdefault(k, []).append(v)
                    if i == 0:
                        self.log_images("images/test/faces", x, y_hat, y_rec, target)
        finally:
            self.age_sampler.rng = state
            self.net.train()
        out = {k: sum(v) / len(v) for k, v in agg.items()}
        self.log_metrics(out, "test")
        return out

    # ------------------------------------------------------------------------------------------------------------
    # outputs

    def log_metrics(self, metrics: dict[str, float], prefix: str) -> None:
        line = ", ".join(f"{k} = {v:.4f}" for k, v in sorted(metrics.items()))
        _log(f"[{prefix}] step {self.global_step}: {line}")
        if self.logger is not None:
            for k, v in metrics.items():
                self.logger.add_scalar(f"{prefix}/{k}", v, self.global_step)

    def log_images(self, name: str, x, y_hat, y_rec, target, count: int = 2) -> None:
        """Grid rows: input | output (target age written on it) | recovered (cycle)."""
        rows = []
        size = y_hat.shape[-1]
        for i in range(min(count, x.shape[0])):
            tiles = [F.adaptive_avg_pool2d(x[i : i + 1], (size, size))[0], y_hat[i]]
            if y_rec is not None:
                tiles.append(y_rec[i])
            rows.append(torch.cat([t.detach().float().cpu() for t in tiles], dim=2))
        grid = torch.cat(rows, dim=1).clamp(-1, 1).add(1).mul(127.5).round().byte()
        img = Image.fromarray(grid.permute(1, 2, 0).numpy())
        draw = ImageDraw.Draw(img)
        for i in range(len(rows)):
            draw.text((size + 2, i * size + 2), f"{float(target[i]) * 100:.0f}", fill=(255, 255, 0))
        path = self.exp_dir / "logs" / name / f"{self.global_step:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=90)
        if self.logger is not None:
            self.logger.add_image(name, np.asarray(img), self.global_step, dataformats="HWC")

    def checkpoint_me(self, loss_dict: dict[str, float], is_best: bool,
                      rngs: list[dict[str, Any]] | None = None) -> Path:
        """``best_model.pt`` / ``iteration_N.pt`` in the published layout (+ ``global_step``; float32 tensors),
        beside it (``*.optim.pt``) the optimizer and scaler, the data position and every rank's random streams
        (``rngs``, from :meth:`_gather_rng`), and a line in ``timestamp.txt``."""
        name = "best_model.pt" if is_best else f"iteration_{self.global_step}.pt"
        path = self.checkpoint_dir / name
        self.net.opts = {**self._plain_opts(), "model_config": self.net.config.to_dict()}
        ckpt = self.net.checkpoint_dict()
        ckpt["state_dict"] = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        ckpt["latent_avg"] = ckpt["latent_avg"].float()
        ckpt["global_step"] = self.global_step
        ckpt["best_val_loss"] = self.best_val_loss
        tmp = path.with_name(path.name + ".tmp")
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
        side = {"optimizer": self.optimizer.state_dict(), "global_step": self.global_step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "data_layout": self._data_layout(),
                "rng": rngs if rngs is not None else self._local_rng()}
        if self.use_scaler:
            side["scaler"] = self.scaler.state_dict()
        opt_path = optimizer_path(path)
        torch.save(side, opt_path.with_name(opt_path.name + ".tmp"))
        os.replace(opt_path.with_name(opt_path.name + ".tmp"), opt_path)
        with open(self.checkpoint_dir / "timestamp.txt", "a") as f:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            if is_best:
                f.write(f"{stamp} **Best**: Step - {self.global_step}, Loss - {self.best_val_loss:.3f}\n{loss_dict}\n")
            else:
                f.write(f"{stamp} Step - {self.global_step}, \n{loss_dict}\n")
        return path

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def run(opts) -> Coach:
    coach = Coach(opts)
    try:
        coach.train()
    finally:
        coach.close()
    return coach
