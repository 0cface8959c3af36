"""The one MP4 writer (sam.video.mp4): a list of frames (lifespan) and a stream of frames (clip) both give a
readable H.264 / yuv420p MP4 of the right frame count and size; both callers use it; a frame rate such as 30000/1001
is kept exact; odd sides are padded, not scaled. The files are read back by ffmpeg's own program (imageio-ffmpeg),
not by the package's reader."""

import subprocess
from fractions import Fraction

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from sam.video import clip, lifespan, threads
from sam.video import mp4 as video_io
from sam.video.mp4 import Mp4Writer, write_mp4
from sam.video.probe import probe_clip


def _frames(n: int, w: int, h: int) -> list[np.ndarray]:
    """Smooth moving gradients (easy for H.264: the decoded frames stay close to them)."""
    y, x = np.mgrid[0:h, 0:w]
    return [np.stack([(x * 255 // max(w - 1, 1) + 9 * i) % 256, y * 255 // max(h - 1, 1),
                      np.full_like(x, 40 + 10 * i)], axis=-1).astype(np.uint8) for i in range(n)]


def _read(path) -> tuple[dict, list[np.ndarray]]:
    """The stream's metadata and every decoded frame (counted by reading: the container's count can be missing)."""
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    return meta, [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]


@pytest.mark.parametrize("w,h", [(64, 48), (40, 40)])
def test_list_and_stream_give_the_same_readable_mp4(tmp_path, w, h):
    frames = _frames(7, w, h)
    n = write_mp4([Image.fromarray(f) for f in frames], tmp_path / "list.mp4", fps=10)
    with Mp4Writer(tmp_path / "stream.mp4", fps=10) as writer:
        for f in frames:
            writer.write(f)
    assert n == writer.frames == 7 and writer.size == (w, h)
    assert not list(tmp_path.glob("*partial*"))
    decoded = {}
    for name in ("list", "stream"):
        meta, got = _read(tmp_path / f"{name}.mp4")
        assert meta["codec"].startswith("h264") and meta["pix_fmt"].startswith("yuv420p")
        assert meta["size"] == (w, h) and meta["fps"] == 10
        assert len(got) == 7
        err = np.abs(np.stack(got).astype(int) - np.stack(frames).astype(int)).mean()
        assert err < 4, f"{name}: mean error {err:.1f} (frames not what was written)"
        decoded[name] = np.stack(got)
    np.testing.assert_array_equal(decoded["list"], decoded["stream"])  # one writer, one recipe


def test_odd_sides_are_padded_to_even(tmp_path):
    y, x = np.mgrid[0:21, 0:33]
    frame = np.stack([x * 7, y * 11, np.full_like(x, 100)], axis=-1).astype(np.uint8)  # bright at the edges
    with Mp4Writer(tmp_path / "odd.mp4", fps=5) as writer:
        for _ in range(3):
            writer.write(frame)
    meta, got = _read(tmp_path / "odd.mp4")
    assert meta["size"] == (34, 22) and len(got) == 3
    got = np.stack(got).astype(int)
    assert np.abs(got[:, :21, :33] - frame).mean() < 6  # the picture where it was
    # the added column and row repeat the edge (no black line along the border)
    assert np.abs(got[:, :21, 33] - frame[:, 32]).mean() < 8 and np.abs(got[:, 21, :33] - frame[20]).mean() < 8


def test_an_exact_frame_rate_is_kept(tmp_path):
    """The clip job writes the input's average rate, e.g. NTSC's 30000/1001: exact in the file, not 2997/100."""
    with Mp4Writer(tmp_path / "ntsc.mp4", fps=Fraction(30000, 1001)) as writer:
        for f in _frames(30, 32, 32):
            writer.write(f)
    info = probe_clip(tmp_path / "ntsc.mp4")
    assert info.fps == Fraction(30000, 1001) and info.frames == 30
    text = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "ntsc.mp4")],
                          capture_output=True).stderr.decode()
    assert "29.97 fps" in text  # (as ffmpeg states it)
    assert _boxes(tmp_path / "ntsc.mp4").index("moov") < _boxes(tmp_path / "ntsc.mp4").index("mdat")  # fast start


def _boxes(path) -> list[str]:
    """The MP4's top-level boxes in file order."""
    data, at, names = path.read_bytes(), 0, []
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        names.append(data[at + 4:at + 8].decode("latin-1"))
        at += size if size >= 8 else len(data)
    return names


def test_abort_leaves_the_file_to_the_caller_and_close_twice_is_safe(tmp_path):
    writer = Mp4Writer(tmp_path / "a.mp4", fps=5)
    writer.write(_frames(1, 16, 16)[0])
    writer.abort()
    writer.abort()
    with pytest.raises(ValueError, match="closed"):
        writer.write(_frames(1, 16, 16)[0])
    done = Mp4Writer(tmp_path / "b.mp4", fps=5)
    for f in _frames(2, 16, 16):
        done.write(f)
    done.close()
    done.close()
    assert len(_read(tmp_path / "b.mp4")[1]) == 2


def test_refusals(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4([], tmp_path / "none.mp4")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="fps"):
        Mp4Writer(tmp_path / "x.mp4", fps=0)
    a, b = _frames(1, 32, 32)[0], _frames(1, 16, 32)[0]
    with pytest.raises(ValueError, match="16x32"):
        write_mp4([a, b], tmp_path / "sizes.mp4")
    assert list(tmp_path.iterdir()) == []  # written through atomic_path: nothing left behind
    with pytest.raises(ValueError, match="RGB"):
        Mp4Writer(tmp_path / "grey.mp4", fps=5).write(np.zeros((8, 8), np.uint8))


def test_both_callers_use_the_one_writer():
    assert lifespan.write_mp4 is video_io.write_mp4
    assert threads.Mp4Writer is video_io.Mp4Writer  # the clip job's output thread
    assert clip.add_audio is video_io.add_audio
    assert not hasattr(clip, "_open_writer") and not hasattr(clip, "_mux_audio")


def test_a_sound_of_64_channels_is_kept_mixed_to_stereo(tmp_path):
    """64 unnamed channels (no layout the resampler maps to stereo): every channel averaged into a stereo AAC track,
    the result says so, and the sound is there (not dropped without a word)."""
    import av

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    src, video = tmp_path / "c64.mkv", tmp_path / "v.mp4"
    split = "".join(f"[a{i}]" for i in range(64))
    subprocess.run([ff, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=64x48:r=10:d=1", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1:sample_rate=8000", "-filter_complex",
                    f"[1:a]asplit=64{split};{split}amerge=inputs=64[a]", "-map", "0:v", "-map", "[a]", "-c:v",
                    "libx264", "-c:a", "pcm_s16le", str(src)], check=True, capture_output=True)
    subprocess.run([ff, "-y", "-v", "error", "-i", str(src), "-map", "0:v", "-c", "copy", str(video)], check=True)
    words = video_io.add_audio(video, src, tmp_path / "out.mp4")
    assert words.startswith("mixed down to stereo AAC")
    with av.open(str(tmp_path / "out.mp4")) as out:
        sound = out.streams.audio[0]
        assert sound.codec_context.name == "aac" and sound.layout.name == "stereo"
        samples = np.concatenate([f.to_ndarray() for f in out.decode(sound)], axis=1)
    with av.open(str(src)) as source:
        tone = np.concatenate([f.to_ndarray() for f in source.decode(source.streams.audio[0])], axis=1)
    peak = float(np.abs(tone).max()) / 2**15  # every channel holds the same tone (s16)
    assert samples.shape[0] == 2 and abs(float(np.abs(samples).max()) - peak) < 0.2 * peak  # at its own loudness
