"""Training losses against hand-computed values, each term's flag, and the auxiliary nets' published key names."""

import functools
import math
import types
import warnings

import pytest
import torch
import torch.nn.functional as F

from train.aux_nets import (
    ArcFace,
    AuxConfig,
    DexVGG,
    LPIPSAlex,
    build_age_net,
    build_arcface,
    build_lpips,
    default_lpips_lin_path,
    save_lpips,
)
from train.losses import LossWeights, SAMLoss, crop_box, id_weights, inner_crop, w_norm_loss

TINY_AUX = AuxConfig.tiny()


def test_id_weights_hand_values():
    target = torch.tensor([0.30, 0.30, 0.0, 1.0, 0.55])
    inp = torch.tensor([0.30, 0.80, 1.0, 0.0, 0.30])
    expected = [1.0, 0.25 * math.cos(math.pi * 0.5) + 0.75, 0.5, 0.5, 0.25 * math.cos(math.pi * 0.25) + 0.75]
    assert torch.allclose(id_weights(target, inp), torch.tensor(expected), atol=1e-6)
    assert torch.allclose(id_weights(inp, target), id_weights(target, inp))  # symmetric in |dt|


def test_crop_indices():
    assert crop_box(256) == (35, 223, 32, 220)
    img = torch.arange(256 * 256, dtype=torch.float32).view(1, 1, 256, 256).repeat(2, 3, 1, 1)
    c = inner_crop(img)
    assert c.shape == (2, 3, 188, 188)
    assert c[0, 0, 0, 0] == 35 * 256 + 32  # row 35, column 32
    assert c[0, 0, -1, -1] == 222 * 256 + 219  # row 222, column 219 (exclusive ends)
    assert crop_box(64) == (9, 56, 8, 55)  # scaled for tiny configs


def test_w_norm_hand_value():
    latent = torch.zeros(2, 3, 2)
    latent[0, 0] = torch.tensor([3.0, 0.0])
    latent[0, 2] = torch.tensor([0.0, 4.0])  # sample 0: norm 5
    latent[1] = 1.0  # sample 1: sqrt(6)
    avg = torch.zeros(3, 2)
    assert torch.isclose(w_norm_loss(latent, avg), torch.tensor((5 + math.sqrt(6)) / 2))
    assert torch.isclose(w_norm_loss(latent + 2.0, torch.full((3, 2), 2.0)), torch.tensor((5 + math.sqrt(6)) / 2))
    assert torch.isclose(w_norm_loss(latent, None), torch.tensor((5 + math.sqrt(6)) / 2))


def test_age_estimate_is_softmax_expectation():
    torch.manual_seed(0)
    net = DexVGG(4, 16, 32).eval()
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    logits = net(F.interpolate(x, size=(32, 32), mode="bilinear"))
    p = logits.softmax(1)
    manual = torch.stack([sum(j * p[i, j] for j in range(101)) for i in range(2)])
    assert torch.allclose(net.estimate_age(x), manual, atol=1e-4)
    with torch.no_grad():  # a net certain of one class estimates that age
        net.fc8_101.weight.zero_()
        net.fc8_101.bias.copy_(-1e4 * torch.ones(101))
        net.fc8_101.bias[42] = 0
    assert torch.allclose(net.estimate_age(x), torch.tensor([42.0, 42.0]))


def test_lpips_identical_zero_positive_and_sum_reduction():
    torch.manual_seed(0)
    net = LPIPSAlex("none").eval()
    a, b = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    assert torch.allclose(net(a, a), torch.zeros(3))
    per = net(a, b)
    assert (per > 0).all()
    net.reduction = "sum"
    assert torch.isclose(net(a, b), per.sum())
    net.reduction = "mean"
    assert torch.isclose(net(a, b), per.mean())


def _criterion(**weights):
    torch.manual_seed(0)
    w = LossWeights(**weights)
    arc = build_arcface(None, TINY_AUX)
    age = build_age_net(None, TINY_AUX)
    lp = build_lpips(None)
    return SAMLoss(w, arc, age, lp, TINY_AUX.id_input_size)


ALL = dict(id_lambda=0.1, l2_lambda=0.25, lpips_lambda=0.1, l2_lambda_aging=0.3, lpips_lambda_aging=0.2,
           l2_lambda_crop=1.0, lpips_lambda_crop=0.6, w_norm_lambda=0.005, aging_lambda=5.0, cycle_lambda=0.5,
           use_weighted_id_loss=True)


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y_hat = (x + 0.3 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1).requires_grad_(True)
    latent = torch.randn(2, 10, 16, generator=g)
    avg = torch.randn(10, 16, generator=g)
    return x, y_hat, latent, avg, torch.tensor([0.2, 0.9]), torch.tensor([0.35, 0.4])


# ---- independent checks of each term: formulas written out from the paper (Sec. 3.3) / the published criteria,
# on small tensors, and LPIPS against the `lpips` package with the same weights. None of them reads the values
# SAMLoss logs to build its expectation.


def hand_mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over every element of the squared difference, summed in Python (float64)."""
    d = (a.detach().double() - b.detach().double()).flatten().tolist()
    return sum(v * v for v in d) / len(d)


def hand_crop(img: torch.Tensor) -> torch.Tensor:
    """The published face crop, rows 35:223 and columns 32:220 at 256 px; at 64 px those ends / 4, rounded."""
    return img[:, :, 35:223, 32:220] if img.shape[-1] == 256 else img[:, :, 9:56, 8:55]


def hand_w_norm(latent: torch.Tensor, avg: torch.Tensor) -> float:
    """mean_i sqrt(sum_{r,j} (W+_i[r, j] - avg[r, j])^2), element by element."""
    norms = []
    for i in range(latent.shape[0]):
        sq = 0.0
        for r in range(latent.shape[1]):
            for j in range(latent.shape[2]):
                sq += (float(latent[i, r, j]) - float(avg[r, j])) ** 2
        norms.append(math.sqrt(sq))
    return sum(norms) / len(norms)


def hand_ages(age_net: DexVGG, images: torch.Tensor) -> list[float]:
    """DEX: the expectation sum_j j p_j of the softmax over the classes 0..100, on the bilinearly resized image."""
    with torch.no_grad():
        logits = age_net(F.interpolate(images.detach(), size=(age_net.input_size,) * 2, mode="bilinear"))
    ages = []
    for row in logits.double().tolist():
        top = max(row)
        e = [math.exp(v - top) for v in row]
        ages.append(sum(j * e[j] for j in range(len(row))) / sum(e))
    return ages


def hand_aging(age_net: DexVGG, y_hat: torch.Tensor, target: torch.Tensor) -> float:
    """mean_i (age(y_hat_i) / 100 - target_i)^2, the target given / 100."""
    ages = hand_ages(age_net, y_hat)
    return sum((a / 100 - float(t)) ** 2 for a, t in zip(ages, target)) / len(ages)


def hand_id_weight(target: float, inp: float) -> float:
    """The paper's weighting by the age change (ages / 100): 1 without change, 0.5 for 100 years."""
    return 0.25 * math.cos(math.pi * abs(target - inp)) + 0.75


def hand_cos(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def hand_id(net, y_hat: torch.Tensor, y: torch.Tensor, size: int, weights: list[float] | None = None) -> float:
    """mean_i w_i (1 - cos(f(crop(y_hat_i)), f(crop(y_i)))), f = the face network on the crop pooled to size."""
    with torch.no_grad():
        f_hat = net(F.adaptive_avg_pool2d(hand_crop(y_hat.detach()), size)).double().tolist()
        f_y = net(F.adaptive_avg_pool2d(hand_crop(y), size)).double().tolist()
    per = [1 - hand_cos(a, b) for a, b in zip(f_hat, f_y)]
    if weights is not None:
        per = [w * p for w, p in zip(weights, per)]
    return sum(per) / len(per)


@functools.cache
def _lpips_package_model():
    lpips = pytest.importorskip("lpips")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation note on `pretrained`; nothing is downloaded
        return lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False).eval()


def reference_lpips(ours: LPIPSAlex):
    """The `lpips` package's LPIPS (AlexNet, v0.1) holding our backbone and linear-head weights."""
    ref = _lpips_package_model()
    own = ours.state_dict()
    state = {}
    for key in ref.state_dict():
        if key.startswith("net.slice"):  # net.sliceK.I.weight holds torchvision's alexnet().features[I]
            _, _, index, name = key.split(".")
            state[key] = own[f"features.{index}.{name}"]
        elif key.startswith("lin") and not key.startswith("lins."):  # linK.model.1.weight
            state[key] = own[f"lin.{key[3]}.1.weight"]
    ref.load_state_dict(state, strict=False)
    assert torch.equal(ref.lins[3].model[1].weight, ours.lin[3][1].weight)
    assert torch.equal(getattr(ref.net.slice5, "10").weight, ours.features[10].weight)
    return ref.eval()


def reference_lpips_value(ref, a: torch.Tensor, b: torch.Tensor) -> float:
    """The published criterion's reduction: the per-image distances averaged over the batch."""
    with torch.no_grad():
        return float(ref(a.detach(), b.detach()).double().mean())  # inputs already in [-1, 1]


def test_l2_and_crop_l2_hand_values_at_the_crop_borders():
    y = torch.zeros(2, 3, 256, 256)
    y_hat = y.clone()
    inside = [(0, 35, 32), (1, 222, 219), (1, 100, 100)]  # first and last row / column of the crop, and its middle
    outside = [(0, 34, 32), (0, 35, 31), (1, 223, 219), (1, 222, 220)]
    for b, r, c in inside + outside:
        y_hat[b, :, r, c] = 2.0  # squared difference 4 in each of the 3 channels
    crit = SAMLoss(LossWeights(l2_lambda=1.0, l2_lambda_crop=1.0))
    _, logs, _ = crit(y, y, y_hat, torch.zeros(2, 3, 4), torch.zeros(2), torch.zeros(2), True, None, "real")
    assert logs["loss_l2_real"] == pytest.approx(len(inside + outside) * 3 * 4 / (2 * 3 * 256 * 256), rel=1e-6)
    assert logs["loss_l2_crop_real"] == pytest.approx(len(inside) * 3 * 4 / (2 * 3 * 188 * 188), rel=1e-6)
    g = torch.Generator().manual_seed(3)  # and on random tensors, against the written-out mean
    a, b = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    _, logs, _ = crit(b, b, a, torch.zeros(2, 3, 4), torch.zeros(2), torch.zeros(2), True, None, "real")
    assert logs["loss_l2_real"] == pytest.approx(hand_mse(a, b), rel=1e-5)
    assert logs["loss_l2_crop_real"] == pytest.approx(hand_mse(hand_crop(a), hand_crop(b)), rel=1e-5)


@pytest.mark.parametrize("size", [64, 256])
def test_lpips_equals_the_lpips_package_with_the_same_weights(size):
    torch.manual_seed(0)
    ours = build_lpips(None)  # random backbone and heads
    ref = reference_lpips(ours)
    g = torch.Generator().manual_seed(size)
    x = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    y_hat = (x + 0.3 * torch.randn(2, 3, size, size, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        per = ours.__class__("none").to(torch.float32)
        per.load_state_dict(ours.state_dict())
        expected_per = ref(y_hat, x).flatten()
        assert torch.allclose(per(y_hat, x), expected_per, rtol=1e-5, atol=1e-7)
    crit = SAMLoss(LossWeights(lpips_lambda=1.0, lpips_lambda_crop=1.0), lpips=ours)
    _, logs, _ = crit(x, x, y_hat, torch.zeros(2, 3, 4), torch.zeros(2), torch.zeros(2), True, None, "real")
    assert logs["loss_lpips_real"] == pytest.approx(reference_lpips_value(ref, y_hat, x), rel=1e-5)
    assert logs["loss_lpips_crop_real"] == pytest.approx(
        reference_lpips_value(ref, hand_crop(y_hat), hand_crop(x)), rel=1e-5)


def test_w_norm_against_the_written_out_norm():
    g = torch.Generator().manual_seed(2)
    latent, avg = torch.randn(3, 10, 16, generator=g), torch.randn(10, 16, generator=g)
    crit = SAMLoss(LossWeights(w_norm_lambda=1.0))
    img = torch.zeros(3, 3, 64, 64)
    _, logs, _ = crit(img, img, img, latent, torch.zeros(3), torch.zeros(3), True, avg, "real")
    assert logs["loss_w_norm_real"] == pytest.approx(hand_w_norm(latent, avg), rel=1e-5)
    _, logs, _ = crit(img, img, img, latent, torch.zeros(3), torch.zeros(3), True, None, "real")  # no average
    assert logs["loss_w_norm_real"] == pytest.approx(hand_w_norm(latent, torch.zeros(10, 16)), rel=1e-5)


class MeanColour(torch.nn.Module):
    """A stand-in face network: the image's mean colour, NOT normalised (the loss must take the cosine itself);
    it records the size of what it is given."""

    def __init__(self):
        super().__init__()
        self.sizes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[1:]))
        return 3.0 * x.mean(dim=(2, 3))


def test_identity_loss_structure_crop_cosine_and_age_weighting():
    """1 - cos of the features of the inner crop pooled to the network's input size, weighted by
    0.25 cos(pi |target - input|) + 0.75; the colours are chosen so that a wrong crop or no cosine shows."""
    c_hat = [[0.9, 0.1, 0.2], [0.1, 0.8, -0.3]]
    c_y = [[0.5, 0.4, 0.1], [-0.2, 0.6, 0.2]]
    y_hat, y = torch.full((2, 3, 256, 256), -0.7), torch.full((2, 3, 256, 256), 0.6)  # outside the crop
    for i in range(2):
        y_hat[i, :, 35:223, 32:220] = torch.tensor(c_hat[i]).view(3, 1, 1)
        y[i, :, 35:223, 32:220] = torch.tensor(c_y[i]).view(3, 1, 1)
    target, inp = torch.tensor([0.2, 0.9]), torch.tensor([0.35, 0.4])
    net = MeanColour()
    crit = SAMLoss(LossWeights(id_lambda=1.0), arcface=net, id_input_size=112)
    loss, logs, per_sample = crit(y, y, y_hat, torch.zeros(2, 3, 4), target, inp, False, None, "real")
    plain = [1 - hand_cos(c_hat[i], c_y[i]) for i in range(2)]
    assert float(loss) == pytest.approx(sum(plain) / 2, rel=1e-5)
    assert set(net.sizes) == {(3, 112, 112)}
    assert per_sample[1]["diff_target_real"] == pytest.approx(hand_cos(c_hat[1], c_y[1]), rel=1e-5)
    crit.w = LossWeights(id_lambda=1.0, use_weighted_id_loss=True)  # the paper: weight by the age change
    loss, _, _ = crit(y, y, y_hat, torch.zeros(2, 3, 4), target, inp, False, None, "real")
    w = [hand_id_weight(0.2, 0.35), hand_id_weight(0.9, 0.4)]
    assert w[1] == pytest.approx(0.75)  # 50 years: cos(pi / 2) = 0
    assert float(loss) == pytest.approx((w[0] * plain[0] + w[1] * plain[1]) / 2, rel=1e-5)
    crit.w = LossWeights(id_lambda=1.0, use_weighted_id_loss=True, id_weight_age="target")  # published code
    loss, _, _ = crit(y, y, y_hat, torch.zeros(2, 3, 4), target, inp, False, None, "real")
    w = [0.25 * math.cos(math.pi * 0.2) + 0.75, 0.25 * math.cos(math.pi * 0.9) + 0.75]
    assert float(loss) == pytest.approx((w[0] * plain[0] + w[1] * plain[1]) / 2, rel=1e-5)


def test_aging_loss_against_the_written_out_softmax_expectation():
    x, y_hat, latent, avg, target, inp = _inputs()
    crit = _criterion(aging_lambda=2.0)
    loss, logs, per_sample = crit(x, x, y_hat, latent, target, inp, False, avg, "real")
    expected = hand_aging(crit.age_net, y_hat, target)
    assert logs["loss_aging_real"] == pytest.approx(expected, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(2.0 * expected, rel=1e-5)
    assert per_sample[0]["output_age_real"] == pytest.approx(hand_ages(crit.age_net, y_hat)[0], rel=1e-5)


# ---- the whole objective of one training step (real + cycle pass), against the hand-written terms


class StubForward:
    """Stands in for ``Coach._forward``: a fixed function of (image, age) with one trainable gain, recording its
    calls."""

    def __init__(self, latent_base: torch.Tensor):
        self.latent_base = latent_base
        self.gain = torch.nn.Parameter(torch.tensor(0.8))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, rgb: torch.Tensor, ages: torch.Tensor, model=None):
        self.calls.append((rgb, ages.clone()))
        a = ages.view(-1, 1, 1, 1)
        y = torch.tanh(self.gain * rgb + 0.5 * a - 0.2)
        latent = self.latent_base + ages.view(-1, 1, 1) * torch.linspace(-1, 1, self.latent_base.shape[-1])
        return y, latent


def one_step(weights: dict, no_aging: bool, cycle_age: str = "input"):
    """``Coach.compute_losses`` on a fixed batch with the real loss nets (tiny, random) and a stub SAM."""
    from train.coach import Coach
    from train.data import AgeSampler

    x, _, latent, avg, _, _ = _inputs()
    crit = _criterion(**weights)
    stub = StubForward(latent)
    fake = types.SimpleNamespace(
        criterion=crit, age_sampler=AgeSampler("30"), _forward=stub, _latent_avg=lambda: avg,
        _check_finite=lambda loss, logs: None, loss_weights=crit.w, opts=types.SimpleNamespace(cycle_age=cycle_age))
    logs, y_hat, y_rec, target, inp = Coach.compute_losses(fake, x, no_aging, backward=False)
    return logs, (x, y_hat, y_rec, target, inp, stub, crit, avg)


def hand_pass(w: dict, crit: SAMLoss, x, out, latent, avg, aged_to, weight_ages, aging_weights: bool) -> dict:
    """Each weighted term of one pass, from the formulas above. ``aged_to``: the ages the pass asked for;
    ``weight_ages``: the other end of the age change (identity weighting); ``aging_weights``: the real pass of
    an aging batch (l2/lpips_lambda_aging) or not (l2/lpips_lambda)."""
    ref = reference_lpips(crit.lpips)
    l2_w = w.get("l2_lambda_aging" if aging_weights else "l2_lambda", 0.0)
    lp_w = w.get("lpips_lambda_aging" if aging_weights else "lpips_lambda", 0.0)
    id_w = None
    if w.get("use_weighted_id_loss"):
        id_w = [hand_id_weight(float(a), float(b)) for a, b in zip(aged_to, weight_ages)]
    arc = lambda t: F.normalize(crit.arcface(t), dim=1)  # noqa: E731 - the given network's unit features
    return {
        "id": w.get("id_lambda", 0.0) * hand_id(arc, out, x, TINY_AUX.id_input_size, id_w),
        "l2": l2_w * hand_mse(out, x),
        "lpips": lp_w * reference_lpips_value(ref, out, x),
        "l2_crop": w.get("l2_lambda_crop", 0.0) * hand_mse(hand_crop(out), hand_crop(x)),
        "lpips_crop": w.get("lpips_lambda_crop", 0.0) * reference_lpips_value(ref, hand_crop(out), hand_crop(x)),
        "w_norm": w.get("w_norm_lambda", 0.0) * hand_w_norm(latent, avg),
        "aging": w.get("aging_lambda", 0.0) * hand_aging(crit.age_net, out, aged_to),
    }


ZEROED = [None, "id_lambda", "l2_lambda", "lpips_lambda", "l2_lambda_aging", "lpips_lambda_aging", "l2_lambda_crop",
          "lpips_lambda_crop", "w_norm_lambda", "aging_lambda", "cycle_lambda"]


@pytest.mark.parametrize("no_aging", [False, True])
@pytest.mark.parametrize("zeroed", ZEROED)
def test_total_of_a_step_equals_the_hand_written_terms(zeroed, no_aging):
    """Real pass x -> target age, cycle pass y_hat (detached) -> input age, all against x; total =
    real + cycle_lambda * cycle. With one weight at 0 its term is gone and the rest unchanged."""
    w = dict(ALL) if zeroed is None else {**ALL, zeroed: 0.0}
    logs, (x, y_hat, y_rec, target, inp, stub, crit, avg) = one_step(w, no_aging)
    with torch.no_grad():
        inp_expected = torch.tensor(hand_ages(crit.age_net, x), dtype=torch.float32) / 100
    assert torch.allclose(inp, inp_expected, atol=1e-6)
    assert torch.allclose(target, inp if no_aging else torch.full((2,), 0.30))
    lat_real = stub(x, target)[1]
    real = hand_pass(w, crit, x, y_hat, lat_real, avg, target, inp, aging_weights=not no_aging)
    total = sum(real.values())
    assert logs["loss_real"] == pytest.approx(total, rel=1e-5)
    if w["cycle_lambda"] > 0:
        (rgb2, ages2) = stub.calls[1]
        assert y_hat.requires_grad and not rgb2.requires_grad  # the cycle pass starts from y_hat, detached,
        assert torch.equal(rgb2, y_hat) and torch.equal(ages2, inp)  # and goes back to the input age (paper)
        lat_cycle = stub(y_hat, inp)[1]
        cycle = hand_pass(w, crit, x, y_rec, lat_cycle, avg, inp, target, aging_weights=False)
        assert logs["loss_cycle"] == pytest.approx(sum(cycle.values()), rel=1e-5)
        total += w["cycle_lambda"] * sum(cycle.values())
    else:
        assert y_rec is None and "loss_cycle" not in logs
    assert logs["loss"] == pytest.approx(total, rel=1e-5)
    if zeroed is None and not no_aging:  # each term counts: the total is not carried by one large term
        assert min(v for v in real.values()) > 1e-4 * total


def test_cycle_to_the_estimated_output_age_published_variant():
    w = dict(ALL)
    logs, (x, y_hat, y_rec, target, inp, stub, crit, avg) = one_step(w, False, cycle_age="estimated_output")
    est = torch.tensor(hand_ages(crit.age_net, y_hat), dtype=torch.float32) / 100
    assert torch.allclose(stub.calls[1][1], est, atol=1e-6)
    cycle = hand_pass(w, crit, x, y_rec, stub(y_hat, est)[1], avg, est, target, aging_weights=False)
    assert logs["loss_cycle"] == pytest.approx(sum(cycle.values()), rel=1e-5)

# ---- published key names


def test_arcface_keys_match_published_ir_se50(tmp_path):
    with torch.device("meta"):
        full = ArcFace()
    sd = full.state_dict()
    assert sd["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert sd["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert {"output_layer.0.running_mean", "output_layer.4.running_var", "body.23.res_layer.5.fc2.weight",
            "body.3.shortcut_layer.0.weight"} <= set(sd)
    tiny = ArcFace(TINY_AUX.id_encoder, TINY_AUX.id_input_size, TINY_AUX.id_embedding)
    torch.save(tiny.state_dict(), tmp_path / "ir.pth")  # the published file is a bare state dict
    loaded = build_arcface(str(tmp_path / "ir.pth"), TINY_AUX)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny.state_dict().values()))
    f = loaded(torch.rand(2, 3, 32, 32))
    assert torch.allclose(f.norm(dim=1), torch.ones(2))


def test_dex_vgg_keys_match_published(tmp_path):
    with torch.device("meta"):
        full = DexVGG()
    sd = full.state_dict()
    assert sd["fc6.weight"].shape == (4096, 25088) and sd["fc8_101.weight"].shape == (101, 4096)
    assert [k for k in sd if k.endswith("weight")][:3] == ["conv1_1.weight", "conv1_2.weight", "conv2_1.weight"]
    assert len([k for k in sd if k.startswith("conv")]) == 26
    tiny = DexVGG(4, 16, 32)
    published = {k.replace("fc8_101", "fc8-101"): v for k, v in tiny.state_dict().items()}
    torch.save({"state_dict": published}, tmp_path / "dex.pth")
    loaded = build_age_net(str(tmp_path / "dex.pth"), TINY_AUX)
    assert torch.equal(loaded.fc8_101.weight, tiny.fc8_101.weight)
    torch.save({"state_dict": {"conv1_1.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not fit DexVGG"):
        build_age_net(str(tmp_path / "bad.pth"), TINY_AUX)


def test_lpips_loads_torchvision_alexnet_and_lpips_heads(tmp_path):
    from train.aux_nets import _alexnet_features

    alex = torch.nn.Module()
    alex.features = _alexnet_features()  # the torchvision AlexNet layout (its classifier is ignored)
    alex.classifier = torch.nn.Linear(2, 2)
    torch.save(alex.state_dict(), tmp_path / "alexnet.pth")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(heads, tmp_path / "alex_lin.pth")
    net = build_lpips(str(tmp_path / "alexnet.pth"), str(tmp_path / "alex_lin.pth"))
    assert torch.equal(net.features[3].weight, alex.features[3].weight)
    assert torch.equal(net.lin[2][1].weight, heads["lin2.model.1.weight"])
    save_lpips(net, tmp_path / "lpips_full.pt")
    again = build_lpips(str(tmp_path / "lpips_full.pt"))
    assert torch.equal(again.lin[4][1].weight, heads["lin4.model.1.weight"])
    assert default_lpips_lin_path(), "the pinned lpips package (requirements-train.txt) ships its heads"
    shipped = build_lpips(str(tmp_path / "alexnet.pth"))  # without a heads file: the package's heads
    assert (shipped.lin[0][1].weight >= 0).all() and not torch.equal(shipped.lin[0][1].weight,
                                                                      heads["lin0.model.1.weight"])
