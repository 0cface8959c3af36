"""Every ``python -m sam`` command end to end on a tiny checkpoint and the astronaut photo."""

import shutil
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from sam.cli import main
from sam.model import SAM

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "assets" / "astronaut.png"
S = TINY.output_size


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture
def data(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(ASTRONAUT, d / "astronaut.png")
    Image.open(ASTRONAUT).convert("RGB").resize((300, 300)).save(d / "small.jpg")
    (d / "notes.txt").write_text("not an image")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(d / "blank.png")
    return d


def run(*args) -> int:
    return main([str(a) for a in args])


def test_inference_layout_sizes_stats_and_skips(ckpt, data, tmp_path, capsys):
    exp = tmp_path / "exp"
    rc = run("inference", "--checkpoint_path", ckpt, "--data_path", data, "--exp_dir", exp,
             "--target_age", "0,50,100", "--couple_outputs", "--device", "cpu")
    assert rc == 0
    for age in (0, 50, 100):
        for name in ("astronaut.png", "small.jpg"):
            out = Image.open(exp / "inference_results" / str(age) / name)
            assert out.size == (S, S)
            assert Image.open(exp / "inference_coupled" / str(age) / name).size == (2 * S, S)
    assert not (exp / "inference_results" / "0" / "blank.png").exists()
    assert (exp / "stats.txt").read_text().startswith("Runtime ")
    err = capsys.readouterr().err
    assert "Done: 2, skipped: 2, failed: 0" in err
    assert "skipped notes.txt: not an image file (.txt)" in err
    assert "skipped blank.png: no face found" in err


def test_inference_is_deterministic_and_keeps_existing(ckpt, data, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for exp in (a, b):
        assert run("inference", "--checkpoint_path", ckpt, "--data_path", data / "astronaut.png",
                   "--exp_dir", exp, "--target_age", "30") == 0
    out_a = a / "inference_results" / "30" / "astronaut.png"
    assert out_a.read_bytes() == (b / "inference_results" / "30" / "astronaut.png").read_bytes()
    out_a.write_bytes(b"sentinel")
    assert run("inference", "--checkpoint_path", ckpt, "--data_path", data / "astronaut.png",
               "--exp_dir", a, "--target_age", "30") == 0
    assert out_a.read_bytes() == b"sentinel"  # kept
    assert "already there" in capsys.readouterr().err
    assert run("inference", "--checkpoint_path", ckpt, "--data_path", data / "astronaut.png",
               "--exp_dir", a, "--target_age", "30", "--overwrite") == 0
    assert out_a.read_bytes() != b"sentinel"


def test_side_by_side(ckpt, data, tmp_path):
    exp = tmp_path / "exp"
    assert run("side-by-side", "--checkpoint_path", ckpt, "--data_path", data, "--exp_dir", exp,
               "--target_age", "10,40,70,90", "--resize_outputs") == 0
    strip = Image.open(exp / "inference_side_by_side" / "astronaut.png")
    assert strip.size == (5 * S, S)


def test_reference_guided(ckpt, data, tmp_path):
    refs = tmp_path / "refs.txt"
    refs.write_text(f"{data / 'small.jpg'}\n{data / 'astronaut.png'}\n")
    exp = tmp_path / "exp"
    assert run("reference-guided", "--checkpoint_path", ckpt, "--data_path", data / "astronaut.png",
               "--exp_dir", exp, "--target_age", "20,60", "--ref_images_paths_file", refs,
               "--latent_mask", "4,5", "--mix_alpha", "0.8") == 0
    for age in (20, 60):
        g = Image.open(exp / "reference_guided_inference" / str(age) / "astronaut.png")
        assert g.size == (3 * S, 2 * S)  # source + 2 references on top, results below
        cells = np.asarray(g)[S:, :, :].reshape(S, 3, S, 3)
        assert not np.array_equal(cells[:, 0], cells[:, 1])  # mixing changed the result


def test_style_mixing(ckpt, data, tmp_path):
    exp = tmp_path / "exp"
    assert run("style-mixing", "--checkpoint_path", ckpt, "--data_path", data / "astronaut.png",
               "--exp_dir", exp, "--target_age", "50", "--n_outputs_to_generate", "3", "--seed", "7",
               "--latent_mask", "5-7") == 0
    strip = Image.open(exp / "style_mixing" / "50" / "astronaut.png")
    assert strip.size == (5 * S, S)  # input, aged, 3 mixed


def test_lifespan_video(ckpt, data, tmp_path):
    exp = tmp_path / "exp"
    assert run("lifespan", "--checkpoint_path", ckpt, "--data_path", data / "astronaut.png", "--exp_dir", exp,
               "--target_age", "0,50,100", "--frames_per_step", "2", "--fps", "12", "--output_size", S,
               "--boomerang", "--gif", "--label") == 0
    mp4 = exp / "lifespan" / "astronaut.mp4"
    reader = imageio.get_reader(mp4)
    frames = [f for f in reader]
    meta = reader.get_meta_data()
    reader.close()
    assert len(frames) == 2 * 7 - 1
    assert meta["codec"] == "h264" and frames[0].shape == (S, S, 3)
    assert Image.open(exp / "lifespan" / "astronaut.gif").n_frames == 13


def test_lifespan_rejects_too_large_size(ckpt, data, tmp_path):
    with pytest.raises(SystemExit, match="larger than the model"):
        run("lifespan", "--checkpoint_path", ckpt, "--data_path", data, "--exp_dir", tmp_path, "--output_size", 1024)


def test_align_command(data, tmp_path):
    two = Image.new("RGB", (1024, 512))
    two.paste(Image.open(ASTRONAUT).convert("RGB"), (0, 0))
    two.paste(Image.open(ASTRONAUT).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    two.save(data / "two.png")
    exp = tmp_path / "exp"
    assert run("align", "--data_path", data, "--exp_dir", exp, "--output_size", 128) == 0
    assert Image.open(exp / "aligned" / "astronaut.png").size == (128, 128)
    assert Image.open(exp / "aligned" / "small.png").size == (128, 128)
    assert run("align", "--data_path", data / "two.png", "--exp_dir", exp, "--all_faces") == 0
    assert {p.name for p in (exp / "aligned").glob("two_face*.png")} == {"two_face0.png", "two_face1.png"}


def test_aligned_inputs_skip_alignment(ckpt, tmp_path):
    d = tmp_path / "aligned"
    d.mkdir()
    Image.new("RGB", (256, 256), (100, 80, 70)).save(d / "face.png")  # no detectable face: fine when --aligned
    assert run("inference", "--checkpoint_path", ckpt, "--data_path", d, "--exp_dir", tmp_path / "e",
               "--target_age", "40", "--aligned") == 0
    assert (tmp_path / "e" / "inference_results" / "40" / "face.png").exists()


def test_nothing_processed_is_an_error(ckpt, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "readme.txt").write_text("hi")
    assert run("inference", "--checkpoint_path", ckpt, "--data_path", d, "--exp_dir", tmp_path / "e") == 1
    with pytest.raises(SystemExit, match="does not exist"):
        run("inference", "--checkpoint_path", ckpt, "--data_path", tmp_path / "nope", "--exp_dir", tmp_path / "e")
    with pytest.raises(SystemExit, match="not found"):
        run("inference", "--checkpoint_path", tmp_path / "missing.pt", "--data_path", d, "--exp_dir", tmp_path)


def test_bad_ages_and_masks(ckpt, data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run("inference", "--checkpoint_path", ckpt, "--data_path", data, "--exp_dir", tmp_path,
            "--target_age", "20,200")
    assert "between 0 and 100" in capsys.readouterr().err
    refs = tmp_path / "r.txt"
    refs.write_text(str(data / "small.jpg"))
    with pytest.raises(SystemExit, match="outside"):
        run("reference-guided", "--checkpoint_path", ckpt, "--data_path", data, "--exp_dir", tmp_path,
            "--ref_images_paths_file", refs, "--latent_mask", "3,99")


def test_random_checkpoint_command(tmp_path, data):
    out = tmp_path / "w" / "tiny.pt"
    assert run("random-checkpoint", "--out", out, "--seed", "3") == 0
    net = SAM.from_checkpoint(out)
    assert net.config == TINY
    with pytest.raises(SystemExit, match="exists"):
        run("random-checkpoint", "--out", out)
    assert run("side-by-side", "--checkpoint_path", out, "--data_path", data / "astronaut.png", "--exp_dir",
               tmp_path / "e", "--target_age", "20,80") == 0


def test_parse_latent_mask():
    from sam.mixing import parse_latent_mask

    assert parse_latent_mask("8,9", 18) == [8, 9]
    assert parse_latent_mask("8-10, 2", 18) == [2, 8, 9, 10]
    assert parse_latent_mask("colour & lighting", 18) == list(range(8, 18))
    assert parse_latent_mask("coarse", 18) == [0, 1, 2, 3]
    assert parse_latent_mask([3, 3, 1], 18) == [1, 3]
    for bad in ("", "x", "3,18", "-1"):
        with pytest.raises(ValueError):
            parse_latent_mask(bad, 18)
    with pytest.raises(ValueError, match="no fine layers"):
        parse_latent_mask("fine", 8)
