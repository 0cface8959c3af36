"""The SAM network on tiny configs: shapes, the published call interface, style mixing, the generator maths."""

import math

import pytest
import torch
import torch.nn.functional as F

from sam.network.model import SAM, add_age_channel, mix_styles
from sam.network.stylegan2 import Generator, ModulatedConv2d

from .conftest import TINY, randomize_


def _x4(batch=2, ages=(20, 70), size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    return add_age_channel(rgb, list(ages)[:batch])


def test_age_channel():
    rgb = torch.zeros(2, 3, 8, 8)
    x4 = add_age_channel(rgb, [0, 35])
    assert x4.shape == (2, 4, 8, 8)
    assert torch.all(x4[0, 3] == 0) and torch.allclose(x4[1, 3], torch.full((8, 8), 0.35))
    with pytest.raises(ValueError, match="ages"):
        add_age_channel(rgb, [1, 2, 3])


@torch.no_grad()
def test_shapes_and_published_call(tiny_model: SAM):
    x4 = _x4()
    n = TINY.n_styles
    assert n == 2 * int(math.log2(TINY.output_size)) - 2
    assert tiny_model.encoder(x4).shape == (2, n, TINY.style_dim)
    assert tiny_model.pretrained_encoder(x4[:, :3]).shape == (2, n, TINY.style_dim)
    out = tiny_model(x4, randomize_noise=False)
    assert out.shape == (2, 3, TINY.pool_size, TINY.pool_size)  # resize=True pools
    full, lat = tiny_model(x4, resize=False, randomize_noise=False, return_latents=True)
    assert full.shape == (2, 3, TINY.output_size, TINY.output_size)
    assert lat.shape == (2, n, TINY.style_dim)
    torch.testing.assert_close(out, F.adaptive_avg_pool2d(full, TINY.pool_size))


@torch.no_grad()
def test_codes_are_residual_plus_pretrained_plus_avg(tiny_model: SAM):
    x4 = _x4()
    _, lat = tiny_model(x4, resize=False, randomize_noise=False, return_latents=True)
    want = tiny_model.encoder(x4) + tiny_model.pretrained_encoder(x4[:, :3]) + tiny_model.latent_avg
    torch.testing.assert_close(lat, want)
    # the age channel changes only the trained encoder's part
    x4_old = x4.clone()
    x4_old[:, 3] = 0.9
    assert not torch.allclose(tiny_model.encode(x4_old), lat)


@torch.no_grad()
def test_noise_modes(tiny_model: SAM):
    x4 = _x4()
    a = tiny_model(x4, randomize_noise=False)
    b = tiny_model(x4, randomize_noise=False)
    c = tiny_model(x4, randomize_noise=True)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@torch.no_grad()
def test_style_mixing(tiny_model: SAM):
    x4 = _x4()
    _, base = tiny_model(x4, randomize_noise=False, return_latents=True)
    inject = torch.randn_like(base)
    mask = [5, 7]
    _, mixed = tiny_model(x4, randomize_noise=False, return_latents=True, latent_mask=mask, inject_latent=inject)
    _, blended = tiny_model(x4, randomize_noise=False, return_latents=True, latent_mask=mask,
                            inject_latent=inject, alpha=0.3)
    _, zeroed = tiny_model(x4, randomize_noise=False, return_latents=True, latent_mask=mask)
    keep = [i for i in range(base.shape[1]) if i not in mask]
    for codes in (mixed, blended, zeroed):
        torch.testing.assert_close(codes[:, keep], base[:, keep])
    torch.testing.assert_close(mixed[:, mask], inject[:, mask])
    torch.testing.assert_close(blended[:, mask], 0.3 * inject[:, mask] + 0.7 * base[:, mask])
    assert torch.all(zeroed[:, mask] == 0)
    with pytest.raises(ValueError, match="latent_mask"):
        mix_styles(base, [base.shape[1]], inject)


@torch.no_grad()
def test_input_code_paths(tiny_model: SAM):
    x4 = _x4()
    img, codes = tiny_model(x4, resize=False, randomize_noise=False, return_latents=True)
    # W+ codes decoded directly
    again = tiny_model(codes, input_code=True, input_is_full=True, resize=False, randomize_noise=False)
    torch.testing.assert_close(again, img)
    # without input_is_full the code goes through the mapping network first
    z = torch.randn(2, TINY.style_dim)
    out, w = tiny_model(z, input_code=True, resize=False, randomize_noise=False, return_latents=True)
    torch.testing.assert_close(w[:, 0], tiny_model.decoder.style(z))
    assert out.shape[-1] == TINY.output_size


@torch.no_grad()
def test_pretrained_codes_argument(tiny_model: SAM):
    x4 = _x4()
    pre = tiny_model.pretrained_encoder(x4[:, :3])
    torch.testing.assert_close(tiny_model.encode(x4, pretrained_codes=pre), tiny_model.encode(x4))


def test_pretrained_encoder_is_frozen_and_gradients_flow(tiny_model: SAM):
    assert not any(p.requires_grad for p in tiny_model.pretrained_encoder.parameters())
    out = tiny_model(_x4(), randomize_noise=False)
    out.square().mean().backward()
    assert tiny_model.encoder.input_layer[0].weight.grad is not None
    assert tiny_model.encoder.input_layer[0].weight.grad.abs().sum() > 0
    assert tiny_model.decoder.convs[0].conv.weight.grad.abs().sum() > 0


@torch.no_grad()
def test_generator_stops_at_resolution():
    g = randomize_(Generator(64, 16, 2, channel_multiplier=1, channel_max=16)).eval()
    w = torch.randn(2, g.n_latent, 16)
    full, _ = g([w], input_is_latent=True, randomize_noise=False)
    half, _ = g([w], input_is_latent=True, randomize_noise=False, resolution=32)
    assert full.shape[-1] == 64 and half.shape[-1] == 32
    # the 32 px image is the skip image that the 64 px block upsamples and adds to
    out, i = g.input(2), 1
    out = g.conv1(out, w[:, 0], noise=g.stored_noise()[0])
    skip = g.to_rgb1(out, w[:, 1])
    noise = g.stored_noise()
    for k in range(3):  # 8, 16, 32
        out = g.convs[2 * k](out, w[:, i], noise=noise[2 * k + 1])
        out = g.convs[2 * k + 1](out, w[:, i + 1], noise=noise[2 * k + 2])
        skip = g.to_rgbs[k](out, w[:, i + 2], skip)
        i += 2
    torch.testing.assert_close(half, skip)
    with pytest.raises(ValueError, match="resolution"):
        g([w], input_is_latent=True, resolution=48)


def _modconv_grouped(conv: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The paper's formulation: one modulated, demodulated weight per sample, applied as a grouped conv."""
    b, cin, h, w = x.shape
    s = conv.modulation(style).view(b, 1, cin, 1, 1)
    weight = conv.scale * conv.weight * s  # b, out, in, k, k
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, -1, 1, 1, 1)
    k = conv.kernel_size
    if conv.upsample:
        wt = weight.transpose(1, 2).reshape(b * cin, conv.out_channel, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * cin, h, w), wt, stride=2, groups=b)
        out = conv.blur(out.view(b, conv.out_channel, *out.shape[-2:]))
    else:
        out = F.conv2d(x.reshape(1, b * cin, h, w), weight.view(b * conv.out_channel, cin, k, k),
                       padding=conv.padding, groups=b).view(b, conv.out_channel, h, w)
    return out


@pytest.mark.parametrize("upsample,demodulate,k", [(False, True, 3), (True, True, 3), (False, False, 1)])
def test_modulated_conv_equals_per_sample_weights(upsample, demodulate, k):
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, k, 8, demodulate=demodulate, upsample=upsample).double()
    with torch.no_grad():
        conv.modulation.bias.uniform_(0.5, 1.5)
    x = torch.randn(3, 6, 7, 7, dtype=torch.float64)
    style = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(conv(x, style), _modconv_grouped(conv, x, style))


def test_generator_sizes_follow_config_f():
    with torch.device("meta"):
        g = Generator()
    assert g.n_latent == 18 and g.num_layers == 17
    assert [g.channels[r] for r in (4, 32, 64, 128, 256, 512, 1024)] == [512, 512, 512, 256, 128, 64, 32]
    with pytest.raises(ValueError, match="power of two"):
        Generator(100)


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_modes_agree(upsample):
    """Per-sample weights (grouped conv) and activation scaling compute the same map; gradients use the latter."""
    torch.manual_seed(1)
    conv = ModulatedConv2d(6, 5, 3, 8, upsample=upsample).double()
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    style = torch.randn(2, 8, dtype=torch.float64)
    outs = {}
    for mode in ("input", "weight"):
        conv.fused = mode
        outs[mode] = conv(x, style)
    torch.testing.assert_close(outs["input"], outs["weight"])


@torch.no_grad()
def test_inplace_inference_epilogue_matches_autograd_path(tiny_model):
    w = torch.randn(2, TINY.n_styles, TINY.style_dim)
    fast, _ = tiny_model.decoder([w], input_is_latent=True, randomize_noise=False)
    with torch.enable_grad():
        slow, _ = tiny_model.decoder([w], input_is_latent=True, randomize_noise=False)
    torch.testing.assert_close(fast, slow.detach())


@pytest.mark.parametrize("blur_kernel", [(1, 3, 3, 1), (1, 2, 3, 2, 1), (1, 3, 3, 3, 3, 1)])
@pytest.mark.parametrize("rows", [5, 16])
def test_banded_levels_match_whole_levels(blur_kernel, rows):
    """CPU inference renders tall levels band by band; every band size and blur length gives the same image."""
    torch.manual_seed(0)
    g = randomize_(Generator(64, 16, 2, channel_multiplier=1, channel_max=8, blur_kernel=list(blur_kernel)))
    g = g.double().eval()
    w = torch.randn(2, g.n_latent, 16, dtype=torch.float64)
    for kwargs in ({"randomize_noise": False}, {"randomize_noise": False, "resolution": 32}, {}):
        with torch.no_grad():
            g.band_rows = rows
            torch.manual_seed(1)  # fresh noise must be drawn in the same order
            banded, _ = g([w], input_is_latent=True, **kwargs)
            g.band_rows = None
            torch.manual_seed(1)
            whole, _ = g([w], input_is_latent=True, **kwargs)
        with torch.enable_grad():  # the plain autograd formulation (no folding, no bands)
            torch.manual_seed(1)
            reference, _ = g([w], input_is_latent=True, **kwargs)
        torch.testing.assert_close(banded, whole)
        torch.testing.assert_close(banded, reference.detach())
    g.band_rows = rows
    with torch.no_grad():  # a batch of one takes the channels-last path without batch folding
        one, _ = g([w[:1]], input_is_latent=True, randomize_noise=False)
        g.band_rows = None
        torch.testing.assert_close(one, g([w[:1]], input_is_latent=True, randomize_noise=False)[0])


def test_encoder_inference_layout_matches_autograd_path(tiny_model):
    """CPU inference runs the IR-SE body in channels-last; the codes equal those of the plain (autograd) path."""
    n = tiny_model.config.encoder.input_size
    x = torch.rand(2, 4, n, n) * 2 - 1
    with torch.no_grad():
        fast = tiny_model.encoder(x)
    with torch.enable_grad():
        plain = tiny_model.encoder(x)
    torch.testing.assert_close(fast, plain.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("upsample", [False, True])
def test_inference_constants_follow_weight_changes(upsample):
    """Inference keeps the squared weight sums (and the transposed up-conv weight); a changed weight renews them."""
    torch.manual_seed(2)
    conv = ModulatedConv2d(6, 5, 3, 8, upsample=upsample)
    x, style = torch.randn(1, 6, 7, 7), torch.randn(1, 8)
    with torch.no_grad():
        conv(x, style)  # fills the cache
        conv.weight.mul_(torch.rand_like(conv.weight))
        got = conv(x, style)
    conv.fused = "input"
    with torch.no_grad():
        torch.testing.assert_close(got, conv(x, style))
