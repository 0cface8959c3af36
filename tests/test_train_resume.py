"""Exact resume: N straight steps end where k steps + resume + (N - k) steps end (weights, BatchNorm statistics,
optimizer state with Ranger's Lookahead slow weights), on the tiny config with everything random switched on
(flips, data order, generator noise, target ages, the no-aging draw) and validation in between; one process, and
two under ``torchrun`` (gloo). A control shows the check can fail: the same resume without the saved random state
ends elsewhere. The loss networks are random; the generator's noise weights are not zero."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam.network.model import SAM, random_init_
from train.__main__ import main
from train.coach import optimizer_path
from train.options import TINY_TRAIN_CONFIG

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def faces(tmp_path) -> Path:
    """4 images (batch 2: two steps per epoch) and, beside them, a random generator with non-zero noise weights
    (a fresh one has zero noise weights: its noise, one of the random streams, would not matter)."""
    d = tmp_path / "faces"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((48, 48)).save(d / f"{i}.png")
    decoder = random_init_(SAM(TINY_TRAIN_CONFIG), seed=1).decoder
    assert all(float(m.noise.weight.detach()) != 0 for m in decoder.convs)
    torch.save({"g_ema": decoder.state_dict()}, tmp_path / "generator.pt")
    return d


def run_args(exp: Path, faces: Path, *extra) -> list[str]:
    weights = ["--stylegan_weights", faces.parent / "generator.pt"] + [
        a for k in ("pretrained_psp_path", "ir_se50_path", "age_predictor_path", "lpips_path") for a in (f"--{k}",
                                                                                                      "random")]
    return [str(a) for a in (
        "--exp_dir", exp, "--train_dir", faces, "--test_dir", faces, "--model_size", "tiny", *weights,
        "--target_age", "uniform_random", "--batch_size", 2, "--test_batch_size", 2, "--workers", 0,
        "--test_workers", 0, "--device", "cpu", "--start_from_encoded_w_plus", "--board_interval", 100,
        "--image_interval", 100, "--val_interval", 2, "--val_max_batches", 1, "--learning_rate", 0.001,
        "--id_lambda", 0.1, "--lpips_lambda", 0.1, "--lpips_lambda_aging", 0.1, "--lpips_lambda_crop", 0.6,
        "--l2_lambda", 0.25, "--l2_lambda_aging", 0.25, "--l2_lambda_crop", 1, "--w_norm_lambda", 0.005,
        "--aging_lambda", 5, "--cycle_lambda", 1, "--use_weighted_id_loss", *extra)]


def ckpt(exp: Path, step: int) -> Path:
    return exp / "checkpoints" / f"iteration_{step}.pt"


def same(x, y) -> bool:
    """Nested dicts / lists / tuples of tensors and plain values, equal everywhere."""
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return isinstance(y, (list, tuple)) and len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
    return torch.equal(x, y) if torch.is_tensor(x) else x == y


def same_state_after(a: Path, b: Path) -> list[str]:
    """What differs between two checkpoints' random streams and data positions (nothing when exact)."""
    sa, sb = (torch.load(optimizer_path(p), map_location="cpu", weights_only=True) for p in (a, b))
    differ = [k for k in ("epoch", "batch_in_epoch", "global_step") if sa[k] != sb[k]]
    differ += [f"rank {r} {k}" for r, (x, y) in enumerate(zip(sa["rng"], sb["rng"])) for k in x if not same(x[k], y[k])]
    return differ


def max_difference(a: Path, b: Path) -> float:
    """Largest difference of any float tensor: the model (weights and BN statistics) and the optimizer state."""
    ma, mb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    oa, ob = (torch.load(optimizer_path(p), map_location="cpu", weights_only=True)["optimizer"] for p in (a, b))
    assert ma["state_dict"].keys() == mb["state_dict"].keys() and oa["state"].keys() == ob["state"].keys()
    assert oa["param_groups"][0].get("step") == ob["param_groups"][0].get("step")
    pairs = [(ma["state_dict"][k], mb["state_dict"][k]) for k in ma["state_dict"]]
    pairs += [(oa["state"][i][k], ob["state"][i][k]) for i in oa["state"] for k in oa["state"][i]]
    assert any("slow_buffer" in s for s in oa["state"].values())  # Ranger's Lookahead weights are saved
    worst = 0.0
    for x, y in pairs:
        if torch.is_tensor(x) and x.is_floating_point():
            worst = max(worst, float((x.double() - y.double()).abs().max()))
        else:
            assert torch.equal(x, y) if torch.is_tensor(x) else x == y
    return worst


def moved(a: Path, b: Path) -> float:
    sa = torch.load(a, weights_only=True)["state_dict"]
    sb = torch.load(b, weights_only=True)["state_dict"]
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa if k.startswith("encoder.") and sa[k].is_floating_point())


def test_resume_equals_an_uninterrupted_run(faces, tmp_path, capsys):
    a = tmp_path / "straight"
    assert main(run_args(a, faces, "--max_steps", 3, "--save_interval", 1)) == 0
    assert moved(ckpt(a, 2), ckpt(a, 3)) > 1e-4  # the step being compared does change the weights

    # 2 + 1 == 3: resumed at an epoch boundary, after a validation (step 2)
    b = tmp_path / "resumed"
    assert main(run_args(b, faces, "--max_steps", 3, "--checkpoint_path", ckpt(a, 2))) == 0
    assert "exactly" in capsys.readouterr().out
    assert max_difference(ckpt(a, 3), ckpt(b, 3)) <= 1e-6
    assert same_state_after(ckpt(a, 3), ckpt(b, 3)) == []

    # control: the same 2 + 1 without the saved random state and data position does not end at step 3's weights
    d = tmp_path / "no_state"
    d.mkdir()
    for p in (ckpt(a, 2), optimizer_path(ckpt(a, 2))):
        shutil.copy(p, d / p.name)
    side = torch.load(optimizer_path(d / "iteration_2.pt"), weights_only=True)
    del side["rng"]
    torch.save(side, optimizer_path(d / "iteration_2.pt"))
    e = tmp_path / "resumed_without_state"
    assert main(run_args(e, faces, "--max_steps", 3, "--checkpoint_path", d / "iteration_2.pt")) == 0
    assert "statistically, not bit-for-bit" in capsys.readouterr().out
    assert max_difference(ckpt(a, 3), ckpt(e, 3)) > 1e-4


@pytest.mark.slow
def test_resume_mid_epoch_across_a_lookahead_step(faces, tmp_path):
    """5 + 2 == 7: resumed in the middle of an epoch; Ranger's Lookahead (k = 6) pulls the weights towards the
    restored slow weights at step 6."""
    a, c = tmp_path / "straight", tmp_path / "resumed"
    assert main(run_args(a, faces, "--max_steps", 7, "--save_interval", 5)) == 0
    assert main(run_args(c, faces, "--max_steps", 7, "--checkpoint_path", ckpt(a, 5))) == 0
    assert max_difference(ckpt(a, 7), ckpt(c, 7)) <= 1e-6
    assert same_state_after(ckpt(a, 7), ckpt(c, 7)) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_resume_under_torchrun_two_processes(faces, tmp_path):
    """Two processes with one image each (+ a data-loader worker each): 2 + 1 == 3 steps; every rank's random
    state is gathered into the side file and given back to its rank."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def launch(exp: Path, *extra) -> None:
        cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "train",
               *run_args(exp, faces, "--batch_size", 1, "--workers", 1, *extra)]
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    a, b = tmp_path / "straight", tmp_path / "resumed"
    launch(a, "--max_steps", 3, "--save_interval", 1)
    side = torch.load(optimizer_path(ckpt(a, 2)), weights_only=True)
    assert len(side["rng"]) == 2 and not torch.equal(side["rng"][0]["torch"], side["rng"][1]["torch"])
    launch(b, "--max_steps", 3, "--checkpoint_path", ckpt(a, 2))
    assert moved(ckpt(a, 2), ckpt(a, 3)) > 1e-4
    assert max_difference(ckpt(a, 3), ckpt(b, 3)) <= 1e-6
    assert same_state_after(ckpt(a, 3), ckpt(b, 3)) == []
