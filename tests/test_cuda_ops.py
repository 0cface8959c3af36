"""CUDA kernels against the PyTorch ops (values and gradients). Skipped without a GPU."""

import math

import pytest
import torch

from sam import ops

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module", autouse=True)
def compiled():
    status = ops.cuda_ops_status()
    if status != "CUDA kernels":
        pytest.fail(f"CUDA ops did not compile: {status}")


CASES = [(1, 1, (1, 1, 1, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (2, 2, (0, 2, 1, 0)), (1, 1, (-1, 2, 0, -1))]


@pytest.mark.parametrize("up,down,pad", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_upfirdn2d_cuda_matches_torch(up, down, pad, dtype):
    x = torch.randn(3, 5, 17, 13, dtype=dtype, device="cuda", requires_grad=True)
    k = torch.randn(4, 3, dtype=dtype, device="cuda")
    got = ops.upfirdn2d(x, k, up, down, pad)
    want = ops.upfirdn2d_torch(x, k, up, down, pad)
    torch.testing.assert_close(got, want)
    go = torch.randn_like(got)
    (g1,) = torch.autograd.grad(got, x, go)
    (g2,) = torch.autograd.grad(want, x, go)
    torch.testing.assert_close(g1, g2)


def test_upfirdn2d_cuda_gradcheck():
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    k = torch.randn(4, 4, dtype=torch.float64, device="cuda")
    fn = lambda t: ops.upfirdn2d(t, k, up=2, pad=(2, 1))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_fused_leaky_relu_cuda_matches_torch():
    x = torch.randn(4, 7, 9, 9, device="cuda", requires_grad=True)
    b = torch.randn(7, device="cuda", requires_grad=True)
    got = ops.fused_leaky_relu(x, b)
    want = ops.fused_leaky_relu_torch(x, b, 0.2, math.sqrt(2))
    torch.testing.assert_close(got, want)
    go = torch.randn_like(got)
    g1 = torch.autograd.grad(got, (x, b), go)
    g2 = torch.autograd.grad(want, (x, b), go)
    for a, c in zip(g1, g2):
        torch.testing.assert_close(a, c)
    assert ops.fused_leaky_relu(x[:, :, 0, 0], b).shape == (4, 7)
