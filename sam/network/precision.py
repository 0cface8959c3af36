"""Reduced-precision inference: which dtype each kind of work runs in, and the machine checks behind ``auto``.

SAM (Alaluf et al., SIGGRAPH 2021, Sec. 3) runs two IR-SE50 pSp encoders and a StyleGAN2 decoder; almost all of
its time is 3x3 convolutions. On CPUs with native bfloat16 dot products (x86 ``avx512_bf16`` or ``amx_bf16``) a
bfloat16 convolution does the same work about twice as fast as a float32 one (bench/); without them bfloat16
is emulated and slower, and float16 on a CPU is slower still. Hence the setting

* ``"fp32"``: everything in float32 (exact, the published numbers);
* ``"bf16"`` / ``"fp16"``: everything in that dtype (encoders' weights converted once, at load: half the memory);
* ``"auto"``: exact float32 for full-resolution results and the published-flag CLI commands, and bfloat16 for
  the approximate work that is already labelled ``fast`` (slider previews, the ages strip, lifespan videos) on
  CPUs that have native bfloat16 (on CUDA: bfloat16 where the GPU supports it; float16 only when asked). On other
  CPUs ``auto`` is ``"fp32"`` for everything.

With ``auto`` the model keeps its float32 weights and :func:`fast_encoder` makes a bfloat16 copy of the
*trained* (age) encoder once, on first use: about 0.53 GB more memory at full size. The frozen encoder's code
(``pretrained_encoder``) is computed once per photo, in float32, and shared by the exact and the fast path; only a
photo's very first preview uses a bfloat16 copy of the frozen encoder (made on first use, another ~0.5 GB), shown
while the float32 code is computed (``AgingPipeline.first_look``). The generator needs no copy: its per-sample
modulated weights are built from the float32 weights and the style every call anyway, and are cast to the
feature maps' dtype as they are built.

What stays float32 in the reduced-precision paths (cheap, and where the range or the last bits matter):
the style affine layers, modulation and demodulation (per-sample weight scales: a sum of squares over up to
4608 products), the W+ codes and their sums with ``latent_avg``, the RGB skip image (every toRGB output is added
in float32), and the noise maps until they are added. Everything else (convolutions, FIR up/down-sampling,
activations, BatchNorm, squeeze-excitation, the encoders' style heads) runs in the reduced dtype, with the
convolutions accumulating in float32 inside oneDNN.
"""

from __future__ import annotations

import copy
import functools
import platform
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sam import settings
from sam.network import PRECISIONS

__all__ = [
    "PRECISIONS",
    "Precision",
    "resolve_precision",
    "precision_for",
    "cpu_flags",
    "cpu_model",
    "cpu_has_native_bf16",
    "isa_summary",
    "apply_precision",
    "fast_encoder",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {v: k for k, v in DTYPES.items()}


# --------------------------------------------------------------------------------------------------------------
# What the CPU has


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags the kernel reports (``flags`` on x86, ``Features`` on Arm); empty where unknown."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    m = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    return frozenset(m.group(1).split()) if m else frozenset()


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform module knows."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else (platform.processor() or platform.machine() or "unknown CPU")


def cpu_has_native_bf16(flags: frozenset[str] | set[str] | None = None) -> bool:
    """Whether the CPU multiplies bfloat16 natively: ``avx512_bf16`` (AVX-512 dot products, e.g. AMD Zen 4,
    Intel Cooper Lake and later) or ``amx_bf16`` (Intel AMX tiles, Sapphire Rapids and later). Read from the
    kernel's CPU flags, not guessed from the model name. ``SAM_CPU_BF16=0/1`` overrides (for tests and odd VMs)."""
    env = settings.text("SAM_CPU_BF16")
    if env in ("0", "1"):
        return env == "1"
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def isa_summary(flags: frozenset[str] | set[str] | None = None) -> dict[str, bool]:
    """The instruction-set extensions that decide convolution speed here, for benchmark records."""
    flags = cpu_flags() if flags is None else flags
    return {"AVX2": "avx2" in flags, "AVX-512": "avx512f" in flags, "AVX512-BF16": "avx512_bf16" in flags,
            "AVX512-FP16": "avx512_fp16" in flags, "AMX-BF16": "amx_bf16" in flags, "AMX-INT8": "amx_int8" in flags}


# --------------------------------------------------------------------------------------------------------------
# The setting


@dataclass(frozen=True)
class Precision:
    """A resolved precision setting: the dtype of exact work and of ``fast`` (preview) work, and why."""

    requested: str  # one of PRECISIONS
    exact: torch.dtype  # full-resolution results, published-flag CLI commands, SAM.forward
    fast: torch.dtype  # work already labelled fast/approximate: previews, the ages strip, videos
    reason: str = ""

    @property
    def name(self) -> str:
        """Short description, e.g. ``"auto (exact fp32, fast bf16)"``."""
        if self.exact == self.fast:
            return _NAMES[self.exact] if self.requested != "auto" else f"auto ({_NAMES[self.exact]})"
        return f"{self.requested} (exact {_NAMES[self.exact]}, fast {_NAMES[self.fast]})"


FP32 = Precision("fp32", torch.float32, torch.float32, "asked for")


def resolve_precision(precision: str | Precision | None, device: str | torch.device = "cpu") -> Precision:
    """``"auto" | "fp32" | "bf16" | "fp16"`` (None = ``"fp32"``) -> a :class:`Precision` for ``device``."""
    if isinstance(precision, Precision):
        return precision
    p = (precision or "fp32").lower().replace("float32", "fp32").replace("bfloat16", "bf16").replace("float16", "fp16")
    if p not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    dev = torch.device(device)
    if p != "auto":
        dt = DTYPES[p]
        slow = dev.type == "cpu" and (
            (dt == torch.bfloat16 and not cpu_has_native_bf16())
            or (dt == torch.float16 and "avx512_fp16" not in cpu_flags() and "amx_fp16" not in cpu_flags()))
        if slow:
            warnings.warn(f"precision {p!r}: {cpu_model()} has no native {p} arithmetic, so it is emulated and "
                          "much slower than float32 here", RuntimeWarning, stacklevel=2)
        return Precision(p, dt, dt, "asked for")
    if dev.type == "cuda":
        # float16 only when asked: without the clamping StyleGAN2's own float16 layers use, its range has not been
        # checked on a GPU here (no GPU was available)
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return Precision("auto", torch.float32, torch.bfloat16, "CUDA with bfloat16: bf16 for previews and videos")
        return Precision("auto", torch.float32, torch.float32, "CUDA without bfloat16: float32 throughout")
    if dev.type == "cpu" and cpu_has_native_bf16():
        return Precision("auto", torch.float32, torch.bfloat16,
                         f"{cpu_model()} has native bfloat16 (avx512_bf16 / amx_bf16): bf16 for previews and videos")
    return Precision("auto", torch.float32, torch.float32,
                     f"{cpu_model() if dev.type == 'cpu' else dev.type} has no native bfloat16: float32 throughout")


def precision_for(
    precision: str | Precision | None, device: str | torch.device = "cpu", int8_style_heads: bool = False
) -> Precision:
    """:func:`resolve_precision`, reconciled with the opt-in int8 style heads (:mod:`sam.network.quantize`), which exist
    in the float32 encoders only: with them ``auto`` means float32, and ``bf16`` / ``fp16`` are refused."""
    p = resolve_precision(precision, device)
    if int8_style_heads and (p.exact != torch.float32 or p.fast != torch.float32):
        if p.requested != "auto":
            raise ValueError(f"int8 style heads run in float32 encoders: use precision 'fp32' or 'auto', "
                             f"not {p.requested!r}")
        return Precision("auto", torch.float32, torch.float32, "int8 style heads: float32 elsewhere")
    return p


# --------------------------------------------------------------------------------------------------------------
# Applying it to a model


def apply_precision(model: nn.Module, precision: Precision) -> nn.Module:
    """Attach ``precision`` to a loaded :class:`~sam.network.model.SAM` (``model.precision``) and convert what it needs.

    With a reduced *exact* dtype (``"bf16"`` / ``"fp16"`` asked for) both encoders are converted in place (the
    memory of their float32 weights is released). The generator keeps float32 weights in every setting (they
    feed the float32 modulation; 0.12 GB), and so do ``latent_avg`` and the codes.
    """
    model.precision = precision
    model._fast_copies = {}
    if precision.exact != torch.float32:
        for enc in (model.encoder, model.pretrained_encoder):
            enc.to(precision.exact)  # parameters and buffers (BatchNorm statistics included), in place
    return model


def fast_encoder(model: nn.Module, name: str = "encoder") -> nn.Module:
    """The encoder ``name`` of ``model`` (the trained age encoder, or ``"pretrained_encoder"``) in
    ``model.precision.fast``: the encoder itself when its dtype is already that, else a converted copy, made on
    first use and kept (about half the float32 encoder's memory for bfloat16)."""
    precision = getattr(model, "precision", FP32)
    dtype = precision.fast
    source = getattr(model, name)
    if next(source.parameters()).dtype == dtype:
        return source
    copies = model.__dict__.setdefault("_fast_copies", {})  # a plain dict: not a submodule, not in state_dict
    enc = copies.get((name, dtype))
    if enc is None:
        enc = _converted_copy(source, dtype)
        if dtype == torch.bfloat16:
            from sam.network.onednn import pack_style_heads

            pack_style_heads(enc)  # CPU: the heads' weights reordered once (sam.network.onednn); elsewhere a no-op
        copies[(name, dtype)] = enc
    return enc


def _converted_copy(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``module`` with floating-point tensors in ``dtype``, without a transient float32 duplicate:
    the modules are deep-copied with every tensor shared, then each tensor is replaced by its converted version."""
    params = dict(module.state_dict())
    memo = {id(t): t for t in list(module.parameters()) + list(module.buffers())}
    # deepcopy with every tensor pre-mapped to itself: copies the modules, shares the tensors (no data copied)
    twin = copy.deepcopy(module, memo)
    with torch.no_grad():
        for name, t in params.items():
            new = t.to(dtype) if t.is_floating_point() else t.clone()
            owner, _, leaf = name.rpartition(".")
            sub = twin.get_submodule(owner) if owner else twin
            if leaf in sub._parameters:
                sub._parameters[leaf] = nn.Parameter(new, requires_grad=False)
            else:
                sub._buffers[leaf] = new
    return twin.eval()
