"""Every ``python -m sam`` command end to end on a tiny checkpoint and the astronaut photo."""

import shutil
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from sam.cli import main
from sam.network.checkpoint import load_model

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
    net = load_model(out)
    assert net.config == TINY
    with pytest.raises(SystemExit, match="exists"):
        run("random-checkpoint", "--out", out)
    assert run("side-by-side", "--checkpoint_path", out, "--data_path", data / "astronaut.png", "--exp_dir",
               tmp_path / "e", "--target_age", "20,80") == 0


def test_parse_latent_mask():
    from sam.network.mixing import parse_latent_mask

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


def test_resumed_run_renders_only_missing_ages_and_keeps_timings(ckpt, data, tmp_path, monkeypatch):
    """A second run redoes only what is missing (an empty file counts as missing) and stats.txt covers both runs."""
    from sam.session import FaceSession

    exp = tmp_path / "exp"
    args = ("inference", "--checkpoint_path", ckpt, "--data_path", data / "astronaut.png", "--exp_dir", exp)
    assert run(*args, "--target_age", "10,20") == 0
    first = (exp / "inference_results" / "10" / "astronaut.png").read_bytes()
    (exp / "inference_results" / "20" / "astronaut.png").write_bytes(b"")  # an interrupted write of the past
    rendered: list[list[int]] = []
    real = FaceSession.renders
    monkeypatch.setattr(FaceSession, "renders", lambda self, ages, *a, **k: rendered.append(list(ages))
                        or real(self, ages, *a, **k))
    assert run(*args, "--target_age", "10,20,30") == 0
    assert rendered == [[20, 30]]  # 10 was complete; the empty 20 and the new 30 are redone
    assert (exp / "inference_results" / "10" / "astronaut.png").read_bytes() == first
    assert (exp / "inference_results" / "20" / "astronaut.png").stat().st_size > 0
    assert run("inference", "--checkpoint_path", ckpt, "--data_path", data / "small.jpg", "--exp_dir", exp,
               "--target_age", "10") == 0
    timings = (exp / "timings.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in timings) == ["astronaut.png", "small.jpg"]
    assert "2 images" in (exp / "stats.txt").read_text()


def test_ctrl_c_ends_with_a_summary_and_no_partial_files(ckpt, data, tmp_path, monkeypatch, capsys):
    from sam.cli import photos as cli

    calls = []

    def interrupted_save(img, path):
        calls.append(path)
        if len(calls) == 2:  # the second output: interrupted while writing
            path.with_name(path.stem + ".partial" + path.suffix).write_bytes(b"half")
            raise KeyboardInterrupt
        real_save(img, path)

    real_save = cli.save
    monkeypatch.setattr(cli, "save", interrupted_save)
    exp = tmp_path / "exp"
    rc = run("inference", "--checkpoint_path", ckpt, "--data_path", data, "--exp_dir", exp, "--target_age", "10")
    err = capsys.readouterr().err
    assert rc == 130
    assert "Interrupted: 1 finished (astronaut.png); run the same command again" in err
    assert "Traceback" not in err
    monkeypatch.setattr(cli, "save", real_save)
    (exp / "inference_results" / "10" / "small.partial.jpg").unlink()  # what our fake left; real saves clean up
    assert run("inference", "--checkpoint_path", ckpt, "--data_path", data, "--exp_dir", exp,
               "--target_age", "10") == 0
    assert "1 with outputs already there" in capsys.readouterr().err


def test_save_leaves_no_partial_file_on_failure(tmp_path):
    from sam.cli import batch as cli

    class Broken:
        def save(self, path, format=None):
            Path(path).write_bytes(b"half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cli.save(Broken(), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_gif_is_not_left_behind(ckpt, data, tmp_path, monkeypatch):
    """A lifespan whose GIF fails leaves neither file (so the next run does the pair again)."""
    from sam.video import lifespan

    def broken_gif(frames, path, fps=20):
        Path(path).with_name(Path(path).stem + ".partial.gif").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(lifespan, "write_gif", broken_gif)
    exp = tmp_path / "exp"
    rc = run("lifespan", "--checkpoint_path", ckpt, "--data_path", data / "astronaut.png", "--exp_dir", exp,
             "--target_age", "0,50", "--frames_per_step", "1", "--output_size", S, "--gif")
    assert rc == 130
    assert not (exp / "lifespan" / "astronaut.mp4").exists() and not (exp / "lifespan" / "astronaut.gif").exists()
