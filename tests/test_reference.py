"""The proof that published weights give published results: the seed-0 synthetic checkpoint (full size, 1024 px,
built by ``sam.network.synthetic``) reproduces the reference implementation's outputs
(``tests/data/seed0_reference.pt``), through ``AgingPipeline.from_pretrained`` (the app's and the CLI's door) and
through the pipeline's steps."""

import pytest
import torch

from sam.network.model import add_age_channel
from sam.pipeline import AgingPipeline

pytestmark = pytest.mark.slow
TOL = 1e-3


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """``max|ours - ref| / max|ref|``."""
    return ((ours.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


@pytest.fixture(scope="module")
def reference(reference_dir):
    return torch.load(reference_dir / "seed0_reference.pt", weights_only=True)


@pytest.fixture(scope="module")
def pipe(seed0_checkpoint):
    return AgingPipeline.from_pretrained(seed0_checkpoint, download=False, device="cpu")


def test_synthetic_weights_checksums(pipe):
    """If these differ, the synthetic value generator differs on this torch, not the model."""
    sd = pipe.model.state_dict()
    assert sd["encoder.input_layer.0.weight"].double().sum().item() == pytest.approx(-9.029990327762334, abs=1e-6)
    assert sd["decoder.noises.noise_3"].double().sum().item() == pytest.approx(-6.267819485859945, abs=1e-6)
    assert pipe.model.latent_avg.double().sum().item() == pytest.approx(58.88839763625765, abs=1e-6)


@torch.inference_mode()
def test_full_forward_reproduces_reference(pipe, reference):
    net = pipe.model
    x4 = add_age_channel(reference["input_rgb"][None].expand(3, -1, -1, -1), reference["ages"])
    images, latents = net(x4, resize=False, randomize_noise=False, return_latents=True)
    assert images.shape == (3, 3, 1024, 1024)
    errors = {
        "latents": rel_err(latents, reference["latents"]),
        "pooled256": rel_err(net.face_pool(images), reference["image_pooled256"]),
        "crop64": rel_err(images[:, :, 480:544, 480:544], reference["image_crop64"]),
    }
    print("relative errors:", errors)
    assert max(errors.values()) < TOL, errors


@torch.inference_mode()
def test_pipeline_reproduces_reference(pipe, reference):
    rgb = reference["input_rgb"]
    face = pipe.encode(((rgb.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
    # 8-bit round trip of the input changes it by < 1/255; feed the exact tensor for the comparison
    face.rgb = rgb[None]
    face.pretrained_codes = pipe.model.pretrained_encoder(face.rgb)
    codes = pipe.latents(face, reference["ages"])
    assert rel_err(codes, reference["latents"]) < TOL
    img = pipe.render(codes[2:], size=256)
    assert rel_err(img, reference["image_pooled256"][2:]) < TOL



def test_weights_check_accepts_the_full_size_checkpoint(seed0_checkpoint, capsys):
    """``python -m sam weights --check`` on a real 2.3 GB file of the published layout: accepted, in seconds."""
    import time

    from sam.cli import main

    start = time.perf_counter()
    assert main(["weights", "--check", str(seed0_checkpoint)]) == 0
    seconds = time.perf_counter() - start
    assert "the published SAM layout, finite weights, loads" in capsys.readouterr().out
    print(f"weights --check of the 2.3 GB checkpoint: {seconds:.1f} s")
