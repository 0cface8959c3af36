"""StyleGAN2's two custom ops: ``upfirdn2d`` (upsample, FIR filter, downsample) and the fused bias + leaky ReLU.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), Appendix B, use a 4x4 FIR
low-pass filter around every resolution change and fold the bias add into the activation. Both ops exist twice:

* a pure-PyTorch formulation (always available, used on CPU, differentiable by autograd), and
* CUDA kernels (``sam/network/csrc/*.cu``) compiled on first use when a tensor lives on a GPU. If compiling fails, the
  PyTorch formulation is used instead and a warning says why. ``SAM_DISABLE_CUDA_OPS=1`` skips the compile.

Both paths compute the same numbers. The CUDA path is wrapped in :class:`torch.autograd.Function` objects whose
backward passes are expressed with the same ops, so gradients (and gradients of gradients) work on both.
"""

from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

from sam import settings

__all__ = [
    "upfirdn2d",
    "upfirdn2d_torch",
    "fused_leaky_relu",
    "fused_leaky_relu_torch",
    "make_kernel",
    "cuda_ops_status",
    "build_cuda_ops",
]

Pad = tuple[int, int, int, int]  # (x0, x1, y0, y1)

# --------------------------------------------------------------------------------------------------------------
# Helpers


def make_kernel(taps: list[float] | torch.Tensor) -> torch.Tensor:
    """Separable 1-D taps -> normalised 2-D FIR kernel (outer product divided by its sum)."""
    k = torch.as_tensor(taps, dtype=torch.float32, device="cpu")  # never meta: a few taps, made eagerly
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def _as_pad(pad: int | tuple[int, ...]) -> Pad:
    """Accept ``p``, ``(p0, p1)`` (same for both axes, rosinality's convention) or ``(x0, x1, y0, y1)``."""
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return (pad[0], pad[1], pad[0], pad[1])
    if len(pad) == 4:
        return pad  # type: ignore[return-value]
    raise ValueError(f"pad must have 1, 2 or 4 entries, got {pad}")


def _out_size(size: int, up: int, down: int, p0: int, p1: int, k: int) -> int:
    return (size * up + p0 + p1 - k + down) // down


# --------------------------------------------------------------------------------------------------------------
# Pure-PyTorch formulations


def upfirdn2d_torch(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Reference formulation: zero-insertion upsampling, padding, FIR convolution, decimation.

    ``x`` is NCHW; the same 2-D ``kernel`` filters every channel (a depthwise convolution). The filter is applied
    as a true convolution (kernel flipped), as in the official StyleGAN2 op.
    """
    x0, x1, y0, y1 = _as_pad(pad)
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.device, x.dtype).view(1, 1, kh, kw).expand(c, 1, kh, kw)
    if up == 1 and x0 == x1 and y0 == y1 and x0 >= 0 and y0 >= 0:
        # common case (blur, downsampling): let the convolution pad and stride (no padded copy)
        return F.conv2d(x, weight, padding=(y0, x0), stride=down, groups=c)
    if up > 1 and down == 1:
        return _upfir_polyphase(x, weight[0, 0], up, (x0, x1, y0, y1))
    if up > 1:  # insert up-1 zeros after every sample, along both axes
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _phase_taps(up: int, p0: int, k: int, out: int) -> tuple[list[list[tuple[int, int]]], int, int, int]:
    """For each output phase r of an ``up``-fold upsample + ``k``-tap filter: (input offset d, tap t) pairs.

    Also returns the smallest offset, the span of offsets (the phase kernels' length) and outputs per phase."""
    phases = []
    for r in range(up):
        # output i = up*m + r reads upsampled sample i + t - p0, which is input (i + t - p0) / up when divisible
        phases.append([((r + t - p0) // up, t) for t in range(k) if (r + t - p0) % up == 0])
    offsets = [d for taps in phases for d, _ in taps] or [0]
    dmin, dmax = min(offsets), max(offsets)
    m = -(-out // up)  # outputs per phase (the last phase may have one extra, cropped afterwards)
    return phases, dmin, dmax - dmin + 1, m


def _upfir_polyphase(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: Pad) -> torch.Tensor:
    """Upsample + FIR filter without zero insertion: each of the ``up**2`` output phases is a small correlation of the
    input with a subset of the taps, and the phases are interleaved with ``pixel_shuffle``. Same sums, ~up**2 less
    work and memory than filtering the zero-stuffed image. ``kernel`` is the (already flipped) correlation kernel."""
    x0, x1, y0, y1 = pad
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    out_h, out_w = h * up + y0 + y1 - kh + 1, w * up + x0 + x1 - kw + 1
    ph_y, dy0, ly, my = _phase_taps(up, y0, kh, out_h)
    ph_x, dx0, lx, mx = _phase_taps(up, x0, kw, out_w)
    # one (phase, row, column) <- (tap row, tap column) entry per used tap, scattered in a single assignment
    idx = [(ry * up + rx, dy - dy0, dx - dx0, ty, tx)
           for ry, taps_y in enumerate(ph_y) for rx, taps_x in enumerate(ph_x)
           for dy, ty in taps_y for dx, tx in taps_x]
    weight = x.new_zeros(up * up, ly, lx)
    if idx:
        p, iy, ix, ty, tx = (list(v) for v in zip(*idx))
        weight[p, iy, ix] = kernel[ty, tx]
    # read input rows dy0 .. my-1+dy0+ly-1 (zeros outside the image; negative pads crop)
    x = F.pad(x.reshape(b * c, 1, h, w), [-dx0, mx + dx0 + lx - 1 - w, -dy0, my + dy0 + ly - 1 - h])
    y = F.conv2d(x, weight[:, None]).reshape(b, c * up * up, my, mx)
    return F.pixel_shuffle(y, up)[:, :, :out_h, :out_w]


def fused_leaky_relu_torch(
    x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2, scale: float = math.sqrt(2)
) -> torch.Tensor:
    """``leaky_relu(x + bias) * scale`` with the bias broadcast along dimension 1."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    return F.leaky_relu(x, negative_slope) * scale


# --------------------------------------------------------------------------------------------------------------
# CUDA extension, compiled on first use

_CSRC = Path(__file__).resolve().parent / "csrc"
_ext: ModuleType | None = None
_ext_error: str | None = None
_ext_lock = threading.Lock()


def _load_cuda_ext() -> ModuleType | None:
    """Compile (once per process; torch caches the build on disk) and return the CUDA extension, or None."""
    global _ext, _ext_error
    if _ext is not None or _ext_error is not None:
        return _ext
    with _ext_lock:
        if _ext is not None or _ext_error is not None:
            return _ext
        if not torch.cuda.is_available():
            _ext_error = "no CUDA device"
            return None
        if settings.flag("SAM_DISABLE_CUDA_OPS"):
            _ext_error = "disabled by SAM_DISABLE_CUDA_OPS"
            return None
        try:
            _ext = build_cuda_ops()
        except Exception as exc:  # noqa: BLE001 - any build failure means "use the PyTorch path"
            _ext_error = f"{type(exc).__name__}: {exc}".strip()[:2000]
            warnings.warn(
                "Could not compile the StyleGAN2 CUDA ops; falling back to the (slower) PyTorch ops. "
                f"Reason: {_ext_error}",
                RuntimeWarning,
                stacklevel=3,
            )
    return _ext


def build_cuda_ops(verbose: bool = False, **load_kwargs) -> ModuleType:
    """Compile (or take from torch's on-disk cache) and import the CUDA extension; raises if that fails.

    Needs ``nvcc`` of the CUDA version torch was built with, not a GPU: ``tests/test_cuda_ops.py`` compiles it
    wherever nvcc exists (with ``TORCH_CUDA_ARCH_LIST`` set when no GPU says which architecture to build for).
    ``load_kwargs`` go to ``torch.utils.cpp_extension.load`` (e.g. ``build_directory``, ``extra_include_paths``)."""
    from torch.utils.cpp_extension import load

    return load(
        name="sam_stylegan2_ops",
        sources=[str(_CSRC / "ops.cpp"), str(_CSRC / "upfirdn2d.cu"), str(_CSRC / "fused_bias_act.cu")],
        verbose=verbose,
        **load_kwargs,
    )


def cuda_ops_status() -> str:
    """A one-line description of which implementation runs on GPU tensors."""
    if not torch.cuda.is_available():
        return "no CUDA device: PyTorch ops"
    ext = _load_cuda_ext()
    return "CUDA kernels" if ext is not None else f"PyTorch ops ({_ext_error})"


def _use_cuda(x: torch.Tensor) -> bool:
    return (x.is_cuda and x.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
            and _load_cuda_ext() is not None)


class _UpFirDn2d(torch.autograd.Function):
    """upfirdn2d via the CUDA kernel; the backward pass is another upfirdn2d (so it is twice differentiable)."""

    @staticmethod
    def forward(ctx, x, kernel, up, down, pad):  # type: ignore[override]
        kernel = kernel.to(x.device)  # FIR taps made on the CPU work with GPU inputs (and their gradients)
        x0, x1, y0, y1 = pad
        kh, kw = kernel.shape
        b, c, h, w = x.shape
        out_h = _out_size(h, up, down, y0, y1, kh)
        out_w = _out_size(w, up, down, x0, x1, kw)
        # Gradient: upsample by `down`, filter with the flipped kernel, downsample by `up`.
        gx0 = kw - x0 - 1
        gy0 = kh - y0 - 1
        gx1 = w * up - out_w * down + x0 - up + 1
        gy1 = h * up - out_h * down + y0 - up + 1
        ctx.grad_args = (down, up, (gx0, gx1, gy0, gy1))
        ctx.save_for_backward(kernel)
        ext = _load_cuda_ext() if x.is_cuda else None
        if ext is not None:
            out = ext.upfirdn2d(x.contiguous(), kernel.to(x.dtype).contiguous(), up, down, x0, x1, y0, y1)
        else:  # used by the CPU tests of this autograd wrapper
            out = upfirdn2d_torch(x, kernel, up, down, pad)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (kernel,) = ctx.saved_tensors
        up, down, pad = ctx.grad_args
        grad_in = _UpFirDn2d.apply(grad_out, torch.flip(kernel, [0, 1]), up, down, pad)
        return grad_in, None, None, None, None


class _FusedLeakyReLU(torch.autograd.Function):
    """Fused bias + leaky ReLU via the CUDA kernel; backward in plain tensor ops (twice differentiable)."""

    @staticmethod
    def forward(ctx, x, bias, negative_slope, scale):  # type: ignore[override]
        ext = _load_cuda_ext() if x.is_cuda else None
        b = bias if bias is not None else x.new_zeros(x.shape[1])
        if ext is not None:
            out = ext.fused_bias_act(x.contiguous(), b.to(x.device, x.dtype).contiguous(), float(negative_slope),
                                     float(scale))
        else:
            out = fused_leaky_relu_torch(x, b, negative_slope, scale)
        ctx.save_for_backward(out)
        ctx.args = (negative_slope, scale, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (out,) = ctx.saved_tensors
        negative_slope, scale, has_bias = ctx.args
        slope = torch.where(out > 0, scale, negative_slope * scale).to(grad_out.dtype)
        grad_in = grad_out * slope
        grad_bias = None
        if has_bias:
            dims = [0] + list(range(2, grad_in.ndim))
            grad_bias = grad_in.sum(dims)
        return grad_in, grad_bias, None, None


# --------------------------------------------------------------------------------------------------------------
# Public entry points


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Upsample by ``up`` (zero insertion), pad, convolve with the 2-D FIR ``kernel``, keep every ``down``-th pixel.

    ``pad`` is ``(p0, p1)`` for both axes or ``(x0, x1, y0, y1)``; negative values crop. Output side:
    ``(in * up + p0 + p1 - k + down) // down``. CUDA kernels on GPU tensors, PyTorch ops elsewhere.
    """
    pad4 = _as_pad(pad)
    if _use_cuda(x):
        return _UpFirDn2d.apply(x, kernel, up, down, pad4)
    return upfirdn2d_torch(x, kernel, up, down, pad4)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2, scale: float = math.sqrt(2)
) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale``; CUDA kernel on GPU tensors, PyTorch ops elsewhere."""
    if _use_cuda(x):
        return _FusedLeakyReLU.apply(x, bias, negative_slope, scale)
    return fused_leaky_relu_torch(x, bias, negative_slope, scale)
