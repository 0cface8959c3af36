"""The CUDA kernels of sam/network/csrc: a compile test wherever ``nvcc`` exists (slow; no GPU needed), and on a GPU
their values and gradients against the PyTorch ops computed in float64 on the CPU (so TF32 and half-precision rounding
of the reference cannot fail a correct kernel), half precision, empty batches, CPU-made FIR taps, and the whole
tiny model on the GPU against the CPU."""

from __future__ import annotations

import glob
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from sam.network import ops

HAS_GPU = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA device")


def _toolkit() -> Path | None:
    """A CUDA toolkit folder with nvcc and the CUDA runtime library to link (``$CUDA_HOME`` first). An ``nvcc`` on
    the PATH may be a wrapper script outside any toolkit (``/usr/local/bin/nvcc`` here), so folders are checked."""
    from torch.utils.cpp_extension import CUDA_HOME

    candidates = [os.environ.get("CUDA_HOME"), CUDA_HOME, "/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"))]
    which = shutil.which("nvcc")
    if which:
        candidates.append(str(Path(which).resolve().parent.parent))
    for c in candidates:
        if c and (Path(c) / "bin" / "nvcc").exists() and any(
                (Path(c) / lib / "libcudart.so").exists() for lib in ("lib64", "lib")):
            return Path(c)
    return None


def _nvcc() -> str | None:
    home = _toolkit()
    return str(home / "bin" / "nvcc") if home else shutil.which("nvcc")


def _nvcc_version(nvcc: str) -> str | None:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def _toolchain_mismatch() -> str | None:
    """Why the kernels cannot be built here (a reason to skip, not a kernel bug), or None."""
    if torch.version.cuda is None:
        return "this torch is a CPU build (torch.version.cuda is None)"
    nvcc = _nvcc()
    if nvcc is None:
        return "no nvcc (install the CUDA toolkit that matches torch's CUDA to build the kernels)"
    if _toolkit() is None:
        return f"nvcc at {nvcc} but no CUDA toolkit folder with libcudart.so (set CUDA_HOME)"
    version = _nvcc_version(nvcc)
    if version is None or version.split(".")[:2] != torch.version.cuda.split(".")[:2]:
        return f"nvcc {version} at {nvcc} does not match torch's CUDA {torch.version.cuda}"
    return None


def _wheel_paths() -> tuple[list[str], list[str]]:
    """Include and library folders of the ``nvidia`` CUDA wheels torch installs (cusparse.h, cublas.h, ...), which a
    minimal toolkit install may lack."""
    try:
        import nvidia  # the namespace package of NVIDIA's CUDA wheels
    except ImportError:
        return [], []
    roots = [Path(p) for p in nvidia.__path__]
    incs = sorted({str(d) for r in roots for d in r.glob("*/include") if d.is_dir()})
    libs = sorted({str(d) for r in roots for d in r.glob("*/lib") if d.is_dir()})
    return incs, libs


@pytest.mark.slow
def test_cuda_kernels_compile(tmp_path, monkeypatch):
    """sam/network/csrc compiles and imports with the local nvcc (GPU or not), so a kernel that does not compile fails
    here and not on a user's GPU. About 2 minutes; skipped with the reason where no matching nvcc exists."""
    reason = _toolchain_mismatch()
    if reason:
        pytest.skip(reason)
    from torch.utils import cpp_extension

    home = str(_toolkit())
    monkeypatch.setenv("CUDA_HOME", home)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", home)  # read once, when torch.utils.cpp_extension is imported
    if not HAS_GPU and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")  # no GPU to ask: build for one architecture (Hopper)
    monkeypatch.setenv("MAX_JOBS", os.environ.get("MAX_JOBS", "2"))
    incs, libs = _wheel_paths()
    ext = ops.build_cuda_ops(build_directory=str(tmp_path), extra_include_paths=incs,
                             extra_ldflags=[f"-L{d}" for d in libs])
    assert callable(ext.upfirdn2d) and callable(ext.fused_bias_act)
    if not HAS_GPU:  # the bindings' own checks run without a GPU
        with pytest.raises(RuntimeError, match="CUDA device"):
            ext.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2), 1, 1, 0, 0, 0, 0)


# --------------------------------------------------------------------------------------------------------------
# On a GPU


@pytest.fixture(scope="module")
def compiled():
    if not HAS_GPU:
        pytest.skip("needs a CUDA device")
    status = ops.cuda_ops_status()
    if status != "CUDA kernels":
        reason = _toolchain_mismatch()
        if reason:
            pytest.skip(f"CUDA ops not built: {reason}")
        pytest.fail(f"CUDA ops did not compile: {status}")


@pytest.fixture(scope="module")
def gpu_ops() -> str:
    """What a user's GPU runs: the CUDA kernels where they build, else the PyTorch formulation. A toolchain mismatch
    is a reason to skip the kernel tests, not the whole-model ones: those then check the fallback users get."""
    if not HAS_GPU:
        pytest.skip("needs a CUDA device")
    status = ops.cuda_ops_status()
    if status != "CUDA kernels" and not _toolchain_mismatch():
        pytest.fail(f"CUDA ops did not compile: {status}")
    return status


@pytest.fixture
def no_tf32():
    """Full float32 matmuls / convolutions on the GPU while a test runs."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


CASES = [(1, 1, (1, 1, 1, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (2, 2, (0, 2, 1, 0)), (1, 1, (-1, 2, 0, -1))]
TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-5), torch.float16: (1e-2, 1e-2),
       torch.bfloat16: (2e-2, 6e-2)}  # (rtol, atol): inputs are N(0, 1), outputs of 4x3 taps


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("up,down,pad", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_upfirdn2d_cuda_matches_torch(compiled, up, down, pad, dtype):
    g = torch.Generator().manual_seed(0)
    x64 = torch.randn(3, 5, 17, 13, dtype=torch.float64, generator=g)
    k64 = torch.randn(4, 3, dtype=torch.float64, generator=g)
    x = x64.to("cuda", dtype).requires_grad_(True)
    got = ops.upfirdn2d(x, k64.to("cuda", dtype), up, down, pad)
    xr = x64.to(dtype).double().requires_grad_(True)  # the same (rounded) inputs, float64 on the CPU
    want = ops.upfirdn2d_torch(xr, k64.to(dtype).double(), up, down, pad)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got.double().cpu(), want, rtol=rtol, atol=atol)
    go = torch.randn(want.shape, dtype=torch.float64, generator=g).to(dtype)
    (g1,) = torch.autograd.grad(got, x, go.to("cuda"))
    (g2,) = torch.autograd.grad(want, xr, go.double())
    torch.testing.assert_close(g1.double().cpu(), g2, rtol=rtol, atol=atol)


@pytest.mark.cuda
@gpu
def test_upfirdn2d_cuda_edge_cases(compiled):
    empty = torch.zeros(0, 3, 8, 8, device="cuda")
    assert ops.upfirdn2d(empty, ops.make_kernel([1, 3, 3, 1]).cuda(), up=2, pad=(2, 1)).shape == (0, 3, 16, 16)
    x = torch.randn(1, 2, 8, 8, device="cuda")
    cpu_taps = ops.make_kernel([1, 3, 3, 1])  # on the CPU: moved to the input's device
    torch.testing.assert_close(ops.upfirdn2d(x, cpu_taps, pad=(1, 2)).cpu(),
                               ops.upfirdn2d_torch(x.cpu(), cpu_taps, pad=(1, 2)), rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@gpu
def test_upfirdn2d_cuda_gradcheck(compiled):
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    k = torch.randn(4, 4, dtype=torch.float64, device="cuda")
    fn = lambda t: ops.upfirdn2d(t, k, up=2, pad=(2, 1))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fused_leaky_relu_cuda_matches_torch(compiled, dtype):
    g = torch.Generator().manual_seed(0)
    x64, b64 = torch.randn(4, 7, 9, 9, dtype=torch.float64, generator=g), torch.randn(7, dtype=torch.float64)
    x = x64.to("cuda", dtype).requires_grad_(True)
    b = b64.to("cuda", dtype).requires_grad_(True)
    got = ops.fused_leaky_relu(x, b)
    xr, br = x64.to(dtype).double().requires_grad_(True), b64.to(dtype).double().requires_grad_(True)
    want = ops.fused_leaky_relu_torch(xr, br, 0.2, math.sqrt(2))
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got.double().cpu(), want, rtol=rtol, atol=atol)
    go = torch.randn(want.shape, dtype=torch.float64, generator=g).to(dtype)
    g1 = torch.autograd.grad(got, (x, b), go.to("cuda"))
    g2 = torch.autograd.grad(want, (xr, br), go.double())
    for a, c in zip(g1, g2):
        torch.testing.assert_close(a.double().cpu(), c, rtol=rtol, atol=atol * 10)  # bias grads sum 324 terms
    assert ops.fused_leaky_relu(x[:, :, 0, 0], b).shape == (4, 7)


@pytest.mark.cuda
@gpu
def test_whole_tiny_model_gpu_matches_cpu(gpu_ops, no_tf32, tiny_model):
    """The same tiny model on the GPU (CUDA ops, unfolded layers) and the CPU (bands, folded epilogues)."""
    from sam.network.model import add_age_channel

    x4 = add_age_channel(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1, [20, 70])
    with torch.no_grad():
        want, want_codes = tiny_model(x4, randomize_noise=False, return_latents=True)
        gpu_model = tiny_model.cuda()
        got, codes = gpu_model(x4.cuda(), randomize_noise=False, return_latents=True)
    torch.testing.assert_close(codes.cpu(), want_codes, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tiny_generator_half_precision_on_gpu(gpu_ops, tiny_model, dtype):
    """Reduced-precision generator on the GPU against float32 on the CPU (the bound of tests/test_precision.py)."""
    w = tiny_model.latent_avg[None] + 0.5 * torch.randn(1, *tiny_model.latent_avg.shape)
    with torch.no_grad():
        want, _ = tiny_model.decoder([w], input_is_latent=True, randomize_noise=False)
        got, _ = tiny_model.cuda().decoder([w.cuda()], input_is_latent=True, randomize_noise=False, dtype=dtype)
    assert got.dtype == torch.float32
    mse = float((got.cpu().clamp(-1, 1) - want.clamp(-1, 1)).pow(2).mean())
    assert 10 * math.log10(4 / max(mse, 1e-12)) >= 30
