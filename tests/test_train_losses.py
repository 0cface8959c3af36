"""Training losses against hand-computed values, each term's flag, and the auxiliary nets' published key names."""

import math

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
TERM_KEY = {"id_lambda": "loss_id", "l2_lambda_crop": "loss_l2_crop", "lpips_lambda_crop": "loss_lpips_crop",
            "w_norm_lambda": "loss_w_norm", "aging_lambda": "loss_aging"}


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y_hat = (x + 0.3 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1).requires_grad_(True)
    latent = torch.randn(2, 10, 16, generator=g)
    avg = torch.randn(10, 16, generator=g)
    return x, y_hat, latent, avg, torch.tensor([0.2, 0.9]), torch.tensor([0.35, 0.4])


@pytest.mark.parametrize(("data_type", "no_aging"), [("real", False), ("cycle", True)])
def test_each_term_finite_and_zero_weight_removes_it(data_type, no_aging):
    x, y_hat, latent, avg, target, inp = _inputs()
    crit = _criterion(**ALL)
    loss, logs, per_sample = crit(x, x, y_hat, latent, target, inp, no_aging, avg, data_type)
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in logs.values())
    loss.backward()
    assert torch.isfinite(y_hat.grad).all() and y_hat.grad.abs().sum() > 0
    aging_real = data_type == "real" and not no_aging
    l2_key, lp_key = ("l2_lambda_aging", "lpips_lambda_aging") if aging_real else ("l2_lambda", "lpips_lambda")
    terms = {**{k: ALL[k] * logs[f"{v}_{data_type}"] for k, v in TERM_KEY.items()},
             l2_key: ALL[l2_key] * logs[f"loss_l2_{data_type}"],
             lp_key: ALL[lp_key] * logs[f"loss_lpips_{data_type}"]}
    total = logs[f"loss_{data_type}"]
    assert total == pytest.approx(sum(terms.values()), rel=1e-5)
    scale = ALL["cycle_lambda"] if data_type == "cycle" else 1.0
    assert float(loss.detach()) == pytest.approx(scale * total, rel=1e-5)
    for flag, contribution in terms.items():
        crit.w = LossWeights(**{**ALL, flag: 0.0})
        _, logs0, _ = crit(x, x, y_hat, latent, target, inp, no_aging, avg, data_type)
        assert logs0[f"loss_{data_type}"] == pytest.approx(total - contribution, rel=1e-5, abs=1e-6)
        removed = [k for k in logs if k not in logs0]
        assert removed, f"{flag}=0 still computes its term"
    # weights that do not apply to this pass change nothing
    other = ("l2_lambda", "lpips_lambda") if aging_real else ("l2_lambda_aging", "lpips_lambda_aging")
    crit.w = LossWeights(**{**ALL, other[0]: 0.0, other[1]: 0.0})
    assert crit(x, x, y_hat, latent, target, inp, no_aging, avg, data_type)[1][f"loss_{data_type}"] == \
        pytest.approx(total, rel=1e-6)
    assert len(per_sample) == 2 and f"output_age_{data_type}" in per_sample[0]


def test_id_loss_hand_value_and_weighting():
    x, y_hat, latent, avg, target, inp = _inputs()
    crit = _criterion(id_lambda=1.0)
    with torch.no_grad():
        f_hat = crit.arcface(F.adaptive_avg_pool2d(y_hat[:, :, 9:56, 8:55], (32, 32)))
        f_y = crit.arcface(F.adaptive_avg_pool2d(x[:, :, 9:56, 8:55], (32, 32)))
    per = 1 - (f_hat * f_y).sum(1)
    _, logs, _ = crit(x, x, y_hat, latent, target, inp, False, avg, "real")
    assert logs["loss_id_real"] == pytest.approx(float(per.mean()), rel=1e-5)
    crit.w = LossWeights(id_lambda=1.0, use_weighted_id_loss=True)
    _, logs, _ = crit(x, x, y_hat, latent, target, inp, False, avg, "real")
    w = 0.25 * torch.cos(math.pi * (target - inp).abs()) + 0.75
    assert logs["loss_id_real"] == pytest.approx(float((w * per).mean()), rel=1e-5)
    crit.w = LossWeights(id_lambda=1.0, use_weighted_id_loss=True, id_weight_age="target")  # published variant
    _, logs, _ = crit(x, x, y_hat, latent, target, inp, False, avg, "real")
    w = 0.25 * torch.cos(math.pi * target) + 0.75
    assert logs["loss_id_real"] == pytest.approx(float((w * per).mean()), rel=1e-5)


def test_aging_loss_hand_value():
    x, y_hat, latent, avg, target, inp = _inputs()
    crit = _criterion(aging_lambda=2.0)
    with torch.no_grad():
        ages = crit.age_net.estimate_age(y_hat) / 100
    loss, logs, _ = crit(x, x, y_hat, latent, target, inp, False, avg, "real")
    assert logs["loss_aging_real"] == pytest.approx(float(((ages - target) ** 2).mean()), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(2.0 * logs["loss_aging_real"], rel=1e-5)


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
    if default_lpips_lin_path():  # the heads shipped with the lpips package fit
        shipped = build_lpips(str(tmp_path / "alexnet.pth"))
        assert (shipped.lin[0][1].weight >= 0).all()
