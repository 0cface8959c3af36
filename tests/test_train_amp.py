"""Mixed precision: ``--amp`` (float16, CUDA only), ``--amp bf16`` (CPU or CUDA): the flag, bf16 training on the
CPU lowering the loss as float32 does, float32 weights and checkpoints, the NaN guard."""

import numpy as np
import pytest
import torch
from PIL import Image

from train.coach import Coach, TrainingDivergedError
from train.options import parse_args

STEPS = 12


@pytest.fixture
def faces(tmp_path):
    d = tmp_path / "faces"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((48, 48)).save(d / f"{i}.png")
    return d


def opts(tmp_path, faces, *extra):
    """One fixed batch, fixed noise and age, Adam: a deterministic descent on the tiny model."""
    args = ["--exp_dir", tmp_path / "exp", "--train_dir", faces, "--model_size", "tiny", "--random_weights",
            "--target_age", 20, "--no_aging_prob", 0, "--batch_size", 2, "--workers", 0, "--device", "cpu",
            "--start_from_encoded_w_plus", "--no_flip", "--fixed_noise", "--optim_name", "adam",
            "--learning_rate", 0.002, "--l2_lambda_aging", 1, "--l2_lambda_crop", 1, "--lpips_lambda_aging", 0.1,
            "--w_norm_lambda", 0.005, "--aging_lambda", 5, "--max_steps", 1000, *extra]
    return parse_args([str(a) for a in args])


def test_amp_flag_values(tmp_path, faces):
    assert opts(tmp_path, faces).amp is None
    assert opts(tmp_path, faces, "--amp").amp == "fp16"  # plain --amp keeps its meaning
    assert opts(tmp_path, faces, "--amp", "bf16").amp == "bf16"
    assert opts(tmp_path, faces, "--amp", "--seed", 3).amp == "fp16"
    with pytest.raises(SystemExit):
        opts(tmp_path, faces, "--amp", "fp8")


def test_fp16_on_cpu_is_ignored_with_a_message(tmp_path, faces, capsys):
    coach = Coach(opts(tmp_path, faces, "--amp"))
    assert coach.amp_dtype is None and not coach.use_scaler
    assert "--amp fp16 ignored" in capsys.readouterr().out
    coach.close()


def curve(tmp_path, faces, *extra) -> tuple[list[float], Coach]:
    coach = Coach(opts(tmp_path, faces, *extra))
    x = next(iter(coach.train_loader))[0]
    return [coach.train_step(x)[0]["loss"] for _ in range(STEPS)], coach


def test_bf16_on_cpu_lowers_the_loss_like_float32(tmp_path, faces):
    fp32, _ = curve(tmp_path / "fp32", faces)
    bf16, coach = curve(tmp_path / "bf16", faces, "--amp", "bf16")
    assert coach.amp_dtype == torch.bfloat16 and not coach.use_scaler
    assert fp32[0] == pytest.approx(bf16[0], rel=0.02) and fp32[0] != bf16[0]  # the same model, run in bf16
    drop32, drop16 = fp32[-1] / fp32[0], bf16[-1] / bf16[0]
    assert drop32 < 0.5 and drop16 < 0.5, (fp32, bf16)  # here about 3.09 -> 0.95 in both
    assert abs(drop16 - drop32) < 0.05, (fp32, bf16)
    assert all(abs(a - b) < 0.05 * a for a, b in zip(fp32, bf16)), (fp32, bf16)  # step by step, within 5 %
    # weights, optimizer state and checkpoint stay float32
    assert all(p.dtype == torch.float32 for p in coach.net.parameters())
    path = coach.checkpoint_me({"loss": bf16[-1]}, is_best=False)
    state = torch.load(path, weights_only=True)
    floats = [v for v in state["state_dict"].values() if v.is_floating_point()] + [state["latent_avg"]]
    assert floats and all(v.dtype == torch.float32 for v in floats)
    coach.close()


def test_nan_guard_under_bf16(tmp_path, faces):
    coach = Coach(opts(tmp_path, faces, "--amp", "bf16"))
    x = next(iter(coach.train_loader))[0]
    x[0, 0, 10, 10] = float("nan")
    with pytest.raises(TrainingDivergedError, match="step 1"):
        coach.train_step(x)
    coach.close()
