"""Lifespan videos on a tiny model: interpolation, frame counts, codec, determinism, labels, GIF."""

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from sam.pipeline import AgingPipeline
from sam.video.lifespan import draw_age_label, interpolate_codes, make_lifespan


def test_interpolation_counts_and_endpoints():
    keys = torch.randn(3, 4, 5)
    codes, ages = interpolate_codes(keys, [0, 50, 100], frames_per_step=4)
    assert codes.shape[0] == len(ages) == 2 * 5 + 1
    torch.testing.assert_close(codes[0], keys[0])
    torch.testing.assert_close(codes[5], keys[1])
    torch.testing.assert_close(codes[-1], keys[2])
    torch.testing.assert_close(codes[2], keys[0] + 0.4 * (keys[1] - keys[0]))
    assert ages[:3] == [0, 10, 20] and ages[-1] == 100
    single, a = interpolate_codes(keys[:1], [30], 10)
    assert single.shape[0] == 1 and a == [30.0]
    with pytest.raises(ValueError):
        interpolate_codes(keys, [0, 100], 3)


def _count_frames(path):
    reader = imageio.get_reader(path)
    n = sum(1 for _ in reader)  # nframes can be inf: count
    meta = reader.get_meta_data()
    reader.close()
    return n, meta


def test_lifespan_mp4_and_gif(tiny_model, tmp_path):
    pipe = AgingPipeline(tiny_model, batch_size=4)
    face = Image.new("RGB", (64, 64), (150, 110, 90))
    res = make_lifespan(pipe, face, tmp_path / "v.mp4", key_ages=[0, 50, 100], frames_per_step=3, fps=10,
                        size=32, boomerang=True, label=True, gif_path=tmp_path / "v.gif")
    forward = 2 * 4 + 1
    assert res.frames == 2 * forward - 1
    n, meta = _count_frames(tmp_path / "v.mp4")
    assert n == res.frames
    assert meta["codec"] == "h264" and meta["fps"] == 10 and meta["size"] == (32, 32)
    assert "yuv420p" in meta.get("pix_fmt", "yuv420p")
    gif = Image.open(tmp_path / "v.gif")
    assert gif.n_frames == res.frames
    assert not list(tmp_path.glob("*.partial*"))


def test_frames_are_deterministic(tiny_model, tmp_path):
    pipe = AgingPipeline(tiny_model)
    face = Image.new("RGB", (64, 64), (90, 110, 150))
    make_lifespan(pipe, face, tmp_path / "a.mp4", key_ages=[20, 60], frames_per_step=2, size=32,
                  gif_path=tmp_path / "a.gif")
    make_lifespan(pipe, face, tmp_path / "b.mp4", key_ages=[20, 60], frames_per_step=2, size=32,
                  gif_path=tmp_path / "b.gif")
    assert (tmp_path / "a.gif").read_bytes() == (tmp_path / "b.gif").read_bytes()


def test_age_label_changes_pixels():
    frame = Image.new("RGB", (128, 128), (128, 128, 128))
    labelled = draw_age_label(frame, 42.4)
    diff = np.abs(np.asarray(labelled, int) - np.asarray(frame, int)).sum(-1)
    ys, xs = np.nonzero(diff)
    assert ys.min() > 64 and xs.max() < 100  # lower-left corner only
    assert np.asarray(frame).std() == 0  # input untouched


def test_bad_video_arguments(tiny_model, tmp_path):
    pipe = AgingPipeline(tiny_model)
    face = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="size"):
        make_lifespan(pipe, face, tmp_path / "x.mp4", size=1024)
    with pytest.raises(ValueError, match="fps"):
        make_lifespan(pipe, face, tmp_path / "x.mp4", size=32, fps=0)
    assert not (tmp_path / "x.mp4").exists()


def test_boomerang_comes_back_through_a_file_not_memory(tmp_path, monkeypatch):
    """The way back of a boomerang (and the GIF) is read from a frame file beside the video, which is gone after:
    the frames are the forward ones reversed, and no rendered frame is kept in memory meanwhile."""
    from sam.video import lifespan

    frames = [Image.new("RGB", (48, 32), (10 * i, 255 - 10 * i, 100)) for i in range(6)]
    held = []
    real_add = lifespan.FrameSpill.add
    monkeypatch.setattr(lifespan.FrameSpill, "add", lambda self, f: held.append(self.path.exists()) or
                        real_add(self, f))
    res = lifespan.write_lifespan(iter(frames), list(range(6)), tmp_path / "b.mp4", 10, boomerang=True,
                                  gif_path=tmp_path / "b.gif")
    assert held == [True] * 6 and res.frames == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.gif", "b.mp4"]  # the frame file is gone
    gif = Image.open(tmp_path / "b.gif")
    colours = []
    for i in range(gif.n_frames):
        gif.seek(i)
        colours.append(gif.convert("RGB").getpixel((5, 5)))
    assert colours[:6] == [f.getpixel((5, 5)) for f in frames] and colours[6:] == colours[4::-1]
    decoded = np.stack(list(iio.imiter(tmp_path / "b.mp4")))
    assert decoded.shape[0] == 11 and np.abs(decoded[7].astype(int) - decoded[3].astype(int)).max() <= 3
