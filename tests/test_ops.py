"""The StyleGAN2 ops against a straightforward loop formulation, and their gradients."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam.network import ops


def upfirdn2d_loops(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Textbook definition, one output pixel at a time: upsample by zero insertion, pad, convolve, decimate."""
    x0, x1, y0, y1 = pad
    n, c, h, w = x.shape
    kh, kw = k.shape
    uh, uw = h * up, w * up
    u = np.zeros((n, c, uh, uw), x.dtype)
    u[:, :, ::up, ::up] = x
    ph, pw = uh + y0 + y1, uw + x0 + x1
    p = np.zeros((n, c, ph, pw), x.dtype)
    for yy in range(ph):
        for xx in range(pw):
            sy, sx = yy - y0, xx - x0
            if 0 <= sy < uh and 0 <= sx < uw:
                p[:, :, yy, xx] = u[:, :, sy, sx]
    oh, ow = (ph - kh) // down + 1, (pw - kw) // down + 1
    out = np.zeros((n, c, oh, ow), x.dtype)
    for oy in range(oh):
        for ox in range(ow):
            acc = 0
            for ty in range(kh):
                for tx in range(kw):  # true convolution: the kernel is flipped
                    acc = acc + p[:, :, oy * down + ty, ox * down + tx] * k[kh - 1 - ty, kw - 1 - tx]
            out[:, :, oy, ox] = acc
    return out


CASES = [
    dict(up=1, down=1, pad=(1, 1, 1, 1)),  # blur after a transposed conv
    dict(up=2, down=1, pad=(2, 1, 2, 1)),  # skip-image upsampling
    dict(up=1, down=2, pad=(1, 1, 1, 1)),  # downsampling (discriminator)
    dict(up=2, down=2, pad=(0, 2, 1, 0)),  # asymmetric
    dict(up=1, down=1, pad=(-1, 2, 0, -1)),  # negative pads crop
    dict(up=3, down=1, pad=(1, 2, 2, 1)),
    # polyphase upsampling path: negative pads, pads wider than the kernel, one phase without taps
    dict(up=2, down=1, pad=(-1, 0, 3, -2)),
    dict(up=2, down=1, pad=(5, 4, 0, 0)),
    dict(up=4, down=1, pad=(0, 0, 1, 2)),
]


@pytest.mark.parametrize("case", CASES)
def test_upfirdn2d_matches_loop_definition(case):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    k = torch.randn(4, 3, generator=g, dtype=torch.float64)  # not symmetric: catches a missing flip
    want = upfirdn2d_loops(x.numpy(), k.numpy(), case["up"], case["down"], case["pad"])
    got = ops.upfirdn2d(x, k, **case)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_upfirdn2d_two_entry_pad_applies_to_both_axes():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    k = ops.make_kernel([1, 3, 3, 1]).double()
    assert torch.equal(ops.upfirdn2d(x, k, up=2, pad=(2, 1)), ops.upfirdn2d(x, k, up=2, pad=(2, 1, 2, 1)))


@pytest.mark.parametrize("case", CASES[:4])
def test_upfirdn2d_gradients(case):
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ops.upfirdn2d_torch(t, k, **case), (x,))


@pytest.mark.parametrize("case", CASES)
def test_autograd_function_backward_formula(case):
    """The custom backward used with the CUDA kernel, run here through the PyTorch forward."""
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 3, dtype=torch.float64)
    pad = ops._as_pad(case["pad"])
    fn = lambda t: ops._UpFirDn2d.apply(t, k, case["up"], case["down"], pad)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
    # and it agrees with autograd through the plain formulation
    y1 = fn(x)
    y2 = ops.upfirdn2d_torch(x, k, case["up"], case["down"], pad)
    go = torch.randn_like(y1)
    (g1,) = torch.autograd.grad(y1, x, go)
    (g2,) = torch.autograd.grad(y2, x, go)
    torch.testing.assert_close(g1, g2)


def test_fused_leaky_relu_definition():
    x = torch.randn(3, 4, 5, 5)
    b = torch.randn(4)
    want = torch.where(x + b[None, :, None, None] > 0, x + b[None, :, None, None],
                       0.2 * (x + b[None, :, None, None])) * math.sqrt(2)
    torch.testing.assert_close(ops.fused_leaky_relu(x, b), want)
    torch.testing.assert_close(ops.fused_leaky_relu(x[:, :, 0, 0], b), want[:, :, 0, 0])  # 2-D (linear layers)


def test_fused_leaky_relu_autograd_function():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    x = (x + 0.05 * x.sign()).requires_grad_()  # keep away from the kink at 0
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    fn = lambda t, bb: ops._FusedLeakyReLU.apply(t, bb, 0.2, math.sqrt(2))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
    assert torch.autograd.gradcheck(lambda t: ops.fused_leaky_relu_torch(t, b), (x,))


def test_make_kernel_matches_published_buffers():
    from sam.network.checkpoint import published_layout

    manifest = published_layout()
    fixed = torch.tensor(manifest["state_dict"]["decoder.convs.0.conv.blur.kernel"]["fixed"])
    torch.testing.assert_close(ops.make_kernel([1, 3, 3, 1]) * 4, fixed)
    assert ops.make_kernel([1, 3, 3, 1]).sum().item() == pytest.approx(1.0)


def test_bad_pad_is_rejected():
    with pytest.raises(ValueError, match="pad"):
        ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2), pad=(1, 2, 3))


def test_upfirdn2d_equals_conv_transpose_formulation():
    """2x upsampling + FIR equals a stride-2 transposed conv with the kernel (a second, independent formulation)."""
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    k = ops.make_kernel([1, 3, 3, 1]).double() * 4
    full = F.conv_transpose2d(x, k.expand(3, 1, 4, 4), stride=2, groups=3)  # 14 x 14
    got = ops.upfirdn2d(x, k, up=2, pad=(2, 1))  # 12 x 12
    torch.testing.assert_close(got, full[:, :, 1:13, 1:13])
