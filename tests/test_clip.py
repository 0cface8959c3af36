"""The video job (``sam.video.clip``): frame count, rate, duration and sound kept; steady alignment (One Euro filter);
no flicker; tracking; bad inputs; cancellation without leftovers. Clips are made here (``tests/clipmaker.py``)
and aged with the tiny random checkpoint."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from sam.cancel import JobCancelledError
from sam.faces.align import ffhq_align
from sam.faces.detect import NoFaceError
from sam.pipeline import AgingPipeline
from sam.requests import RequestError
from sam.video import clip, keyframes, probe
from sam.video.smoothing import CodeSmoother, OneEuroFilter
from sam.video.tracking import FaceTracker
from tests.browser import launch, needs_chromium, open_page, patient, screenshot_dir
from tests.clipmaker import ASTRONAUT, make_clip, streams

FPS = 25
STILL = range(15, 50)  # frames of the still segment measured (the clip is still for its first 2 s)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two OpenMP threads wait on each other for most of the time."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint) -> AgingPipeline:
    return AgingPipeline.from_pretrained(tiny_checkpoint, download=False, device="cpu")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "astronaut.mp4")


@pytest.fixture(scope="module")
def aged(pipe, source, tmp_path_factory) -> clip.ClipResult:
    out = tmp_path_factory.mktemp("aged") / "aged.mp4"
    return clip.age_clip(pipe, source, out, 70, trace=True)


def audio_md5(path: Path) -> str:
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a", "-c",
                           "copy", "-f", "md5", "-"], capture_output=True, check=True)
    return done.stdout.decode().strip()


def aligned_std(frames: list[np.ndarray], matrices: list[np.ndarray], align_size: int) -> float:
    """How much a face that does not move moves in its aligned crop: the mean landmark position over the still
    frames (the face's true place) mapped into each frame's crop; std over frames, mean over the 68 points, in
    pixels of a 256 px crop."""
    truth = np.mean(frames, axis=0)
    pos = np.array([(truth + 0.5 - m[:, 2]) @ np.linalg.inv(m[:, :2]).T - 0.5 for m in matrices])
    return float(np.sqrt(pos.var(axis=0).sum(axis=-1)).mean() * 256 / align_size)


def flicker(frames: list[np.ndarray], box: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames inside ``box`` (grey levels)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crops = np.array([f[y0:y1, x0:x1].astype(np.float64) for f in frames])
    return float(np.abs(np.diff(crops, axis=0)).mean())


# --------------------------------------------------------------------------------------------- filters


def test_one_euro_filter_removes_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    t = np.arange(200) / 25
    still = 100.0 + rng.normal(0, 1.0, (200, 2))
    f = OneEuroFilter(min_cutoff=0.4, beta=0.05)
    out = np.array([f(ti, x) for ti, x in zip(t, still, strict=True)])
    assert out[50:].std(axis=0).max() < 0.35 * still[50:].std(axis=0).min()
    ramp = 100.0 + 200.0 * t[:, None] + rng.normal(0, 1.0, (200, 2))  # 200 px/s
    f.reset()
    out = np.array([f(ti, x) for ti, x in zip(t, ramp, strict=True)])
    lag = (100.0 + 200.0 * t[100:, None] - out[100:]).mean()
    assert lag < 10.0  # under 2 frames of motion behind
    plain = OneEuroFilter(min_cutoff=0.4, beta=0.0)  # without the speed term: the lag the filter avoids
    slow = np.array([plain(ti, x) for ti, x in zip(t, ramp, strict=True)])
    assert (100.0 + 200.0 * t[100:, None] - slow[100:]).mean() > 4 * lag


def test_code_smoother_is_frame_rate_independent():
    a, b = CodeSmoother(0.2), CodeSmoother(0.2)
    x = torch.ones(3)
    a(0.0, torch.zeros(3))
    b(0.0, torch.zeros(3))
    ya = a(0.1, x)
    yb = [b(0.05, x), b(0.1, x)][-1]
    assert torch.allclose(ya, yb, atol=1e-6)
    assert CodeSmoother(0.0)(1.0, x) is x


# --------------------------------------------------------------------------------------------- the job


def test_clip_keeps_frames_rate_duration_and_sound(aged, source):
    info, out = probe.probe_clip(source), probe.probe_clip(aged.path)
    print(f"\ninput: {info.frames} frames, {float(info.fps):g} fps, {info.duration:.3f} s; output: {out.frames} "
          f"frames, {float(out.fps):g} fps, {out.duration:.3f} s, audio {out.audio_codec} ({aged.audio})")
    assert info.frames == 5 * FPS
    assert abs(out.frames - info.frames) <= 1
    assert out.fps == info.fps == FPS
    assert abs(out.duration - info.duration) <= 1 / FPS
    assert out.size == info.size == (320, 240)
    assert aged.audio == "copied" and out.audio_codec == "aac"
    assert audio_md5(aged.path) == audio_md5(source)  # the very same audio packets
    assert "Video: h264" in streams(aged.path)
    assert aged.faces == {0: info.frames}  # one person, one number, every frame
    assert sorted(p.name for p in aged.path.parent.iterdir()) == ["aged.mp4"]  # no temporary files left


def test_clip_alignment_is_steady_when_the_head_is_still(aged, source):
    """Smoothed: < 1 px std at 256 px; and clearly steadier than the same tracking without the filter."""
    still = [f for f in aged.trace if f.frame in STILL]
    assert len(still) == len(STILL)
    raw = [f.raw for f in still]
    with_filter = aligned_std(raw, [f.matrix for f in still], still[0].align_size)
    tracker = FaceTracker(smooth=False)
    matrices = []
    for i, arr in enumerate(probe.read_frames(probe.probe_clip(source))):
        if i >= STILL.stop:
            break
        frame = Image.fromarray(arr)
        (tr,) = tracker.step(frame, i / FPS)
        if i in STILL:
            matrices.append(ffhq_align(frame, tr.smooth, 64)[2])
    without = aligned_std(raw, matrices, 64)
    print(f"\naligned-crop landmark std on the still segment (256 px): {with_filter:.3f} px smoothed, "
          f"{without:.3f} px without smoothing")
    assert with_filter < 1.0
    assert with_filter < 0.6 * without


def test_clip_does_not_flicker(aged, source):
    still = [f for f in aged.trace if f.frame in STILL]
    box = np.mean([f.box for f in still], axis=0)
    inp = [a for i, a in enumerate(probe.read_frames(probe.probe_clip(source))) if i in STILL]
    out = [a for i, a in enumerate(probe.read_frames(probe.probe_clip(aged.path))) if i in STILL]
    f_in, f_out = flicker(inp, box), flicker(out, box)
    print(f"\nflicker inside the face box: input {f_in:.2f}, output {f_out:.2f} grey levels; ratio {f_out / f_in:.2f}")
    assert f_out <= 1.5 * f_in
    # the face was changed (the tiny model's face is pasted), not just passed through
    assert np.abs(np.asarray(inp[0], float) - np.asarray(out[0], float)).mean() > 5


def test_clip_rotated_variable_rate_without_sound(pipe, source, tmp_path):
    """A vertical phone clip: stored sideways with a rotation tag, frames at uneven times, no audio track."""
    sideways = tmp_path / "sideways.mp4"
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    # an upright 240x320 picture stored turned (transpose=1: 90 degrees clockwise; the tag turns it back);
    # frames 1, 4, 7... dropped, the others keep their times
    subprocess.run([ff, "-y", "-v", "error", "-i", str(source), "-t", "2", "-an",
                    "-vf", "crop=240:240,pad=240:320:0:40,transpose=1,select='not(eq(mod(n\\,3)\\,1))'",
                    "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tmp_path / "vfr.mp4")],
                   check=True)
    subprocess.run([ff, "-y", "-v", "error", "-display_rotation", "90", "-i", str(tmp_path / "vfr.mp4"), "-c",
                    "copy", str(sideways)], check=True)
    info = probe.probe_clip(sideways)
    assert info.size == (240, 320) and info.rotation in (90, -90, 270) and info.audio_codec is None
    assert info.frames == 33
    assert abs(float(info.fps) - 16.5) < 0.6  # the average rate: 33 frames in about 2 s
    out = clip.age_clip(pipe, info, tmp_path / "out.mp4", 30)
    res = probe.probe_clip(out.path)
    assert abs(res.frames - info.frames) <= 1 and res.size == (240, 320) and res.audio_codec is None
    assert abs(res.duration - info.duration) <= 1 / float(info.fps)
    assert out.audio == "none" and out.faces[0] > 0.8 * info.frames


def test_clip_cancelled_leaves_nothing(pipe, source, tmp_path):
    seen = []

    def stop() -> bool:
        return len(seen) >= 6

    with pytest.raises(JobCancelledError):
        clip.age_clip(pipe, source, tmp_path / "out.mp4", 70, progress=lambda d, t: seen.append((d, t)),
                      should_stop=stop)
    assert seen[-1] == (6, 125)
    assert list(tmp_path.iterdir()) == []


def test_clip_span_ages_only_inside(pipe, source, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", refuse)  # the whole job (probe, frames, MP4, sound) starts no program
    out = clip.age_clip(pipe, source, tmp_path / "span.mp4", 70, start=1.0, end=1.4)
    assert out.frames == 125 and out.faces == {0: 10} and out.audio == "copied"


def test_clip_without_a_face_is_refused_and_nothing_written(pipe, tmp_path):
    blank = tmp_path / "blank.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=10:duration=1", "-pix_fmt", "yuv420p", str(blank)], check=True)
    with pytest.raises(NoFaceError, match="no face found in the video"):
        clip.age_clip(pipe, blank, tmp_path / "out" / "x.mp4", 50)
    assert list((tmp_path / "out").iterdir()) == []


def test_probe_refuses_what_is_not_a_video(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (200, 100, 50)).save(photo)
    sound = tmp_path / "sound.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", "-c:a", "aac", str(sound)], check=True)
    for path, words in [(empty, "empty"), (text, "not a video"), (sound, "not a video"),
                        (photo, "single picture"), (tmp_path / "missing.mp4", "not found")]:
        with pytest.raises(RequestError, match=words) as err:
            probe.probe_clip(path)
        assert str(tmp_path) not in str(err.value)


def test_probe_reads_a_gif(tmp_path):
    frames = [Image.new("RGB", (64, 48), (i * 20, 0, 0)) for i in range(10)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    info = probe.probe_clip(tmp_path / "a.gif")
    assert info.frames == 10 and abs(float(info.fps) - 10) < 0.5 and info.size == (64, 48)
    assert len(list(probe.read_frames(info))) == 10


def test_the_first_video_stream_is_checked_and_read(tmp_path):
    """A clip with a second, larger and faster video stream: the first one is both checked and read (ffmpeg's own
    choice would be the largest: checks on one stream and frames from another)."""
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    two = tmp_path / "two.mkv"
    subprocess.run([ff, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=64x48:r=10:d=1", "-f", "lavfi", "-i",
                    "testsrc=s=320x240:r=100:d=1", "-map", "0:v", "-map", "1:v", "-c:v", "libx264", "-preset",
                    "ultrafast", str(two)], check=True)
    info = probe.probe_clip(two, probe.ClipLimits(fps=60, frames=50, pixels=64 * 48))
    assert (info.stream, info.frames, info.size, info.fps) == (0, 10, (64, 48), 10)
    frames = list(probe.read_frames(info))
    assert len(frames) == 10 and frames[0].shape == (48, 64, 3)


@pytest.mark.parametrize("turn", [["-display_rotation", "90"], ["-display_rotation", "180"],
                                  ["-display_rotation", "-90"], ["-display_rotation", "90", "-display_hflip"],
                                  ["-display_rotation", "0", "-display_vflip"]])
def test_frames_come_out_upright_as_ffmpeg_shows_them(tmp_path, turn):
    """The display matrix (quarter turns and mirroring) applied as ffmpeg's command line applies it."""
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ff, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=96x64:r=10:d=0.3", "-c:v", "libx264",
                    "-pix_fmt", "yuv444p", "-qp", "0", str(tmp_path / "flat.mp4")], check=True)
    subprocess.run([ff, "-y", "-v", "error", *turn, "-i", str(tmp_path / "flat.mp4"), "-c", "copy",
                    str(tmp_path / "turned.mp4")], check=True)
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "turned.mp4"))
    w, h = next(reader)["size"]
    want = np.stack([np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader])
    info = probe.probe_clip(tmp_path / "turned.mp4")
    got = np.stack(list(probe.read_frames(info)))
    assert info.size == (w, h) and got.shape == want.shape
    assert np.abs(got.astype(int) - want).max() <= 1


def test_check_span_in_words():
    assert probe.check_span(None, None, 5.0) == (0.0, 5.0)
    assert probe.check_span("1.5", 9, 5.0) == (1.5, 9.0)  # an end past the clip: to its end
    for start, end, words in [(6, None, r"the start \(6 s\) is past the end of the video \(5.00 s\)"),
                              (2, 2, r"the end \(2 s\) must come after the start \(2 s\)"),
                              (2, 1, r"the end \(1 s\) must come after the start \(2 s\)"),
                              (float("nan"), None, "start must be a number"), (-1, None, "start must be"),
                              (0, float("inf"), "end must be a number"), ("soon", None, "start must be a number")]:
        with pytest.raises(RequestError, match=words):
            probe.check_span(start, end, 5.0)


def test_cli_video(source, tiny_checkpoint, tmp_path, capsys):
    from sam.cli import main

    out = tmp_path / "cli.mp4"
    args = ["video", "--input", str(source), "--output", str(out), "--target_age", "80", "--checkpoint_path",
            str(tiny_checkpoint), "--device", "cpu", "--start", "0.4", "--end", "0.8", "--preview"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "125 frames at 25.000 fps, 5.00 s, audio copied" in err and "{0: 10}" in err
    with pytest.raises(SystemExit, match="exists"):
        main(args)
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n" * 100)
    with pytest.raises(SystemExit, match="not a video"):
        main(["video", "--input", str(text), "--output", str(tmp_path / "x.mp4")])


# --------------------------------------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("short") / "short.mp4", seconds=1.2, still=1.2)


@pytest.fixture(scope="module")
def page(tiny_checkpoint):
    import web

    return web.build_demo(str(tiny_checkpoint), device="cpu")


def test_app_video_limits_in_words(page, source, tmp_path, monkeypatch):
    import dataclasses

    a = page.sam_app
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fake = tmp_path / "fake.mp4"
    fake.write_text("hello " * 100)
    for clip_, words in [(None, "add a video first"), (str(text), "not a video the page takes"),
                         (str(fake), "not a video that can be read")]:
        with pytest.raises(RequestError, match=words):
            a.video(clip_, 70)
    with pytest.raises(RequestError, match="faces must be"):
        a.video(str(source), 70, "everyone")
    with pytest.raises(RequestError, match="start must be a number"):
        a.video(str(source), 70, "all", 256, float("nan"))
    for huge, words in [((10**400,), "target age must be a number"), ((70, "all", 10**400), "output size must be"),
                        ((70, "all", 256, 10**400), "start must be a number")]:
        with pytest.raises(ValueError, match=words):  # an integer beyond any float: words, not OverflowError
            a.video(str(source), *huge)
    monkeypatch.setattr(a, "limits", dataclasses.replace(a.limits, clip_max_seconds=3))
    with pytest.raises(RequestError, match="5 seconds long; this page takes clips of at most 3 seconds"):
        a.video(str(source), 70)
    monkeypatch.setattr(a, "limits", dataclasses.replace(a.limits, clip_max_mb=0.001))
    with pytest.raises(RequestError, match="at most 0.001 MB"):
        a.video(str(source), 70)


def test_app_video_endpoint(page, short_clip, tmp_path):
    from gradio_client import Client, handle_file

    url = launch(page)
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        got = client.predict(handle_file(str(short_clip)), 60, "all", api_name="/video")
        path = Path(got["video"] if isinstance(got, dict) else got)
        info = probe.probe_clip(path)
        assert info.frames == 30 and info.fps == FPS and info.audio_codec == "aac"
        blank = tmp_path / "blank.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i",
                        "testsrc=size=160x120:rate=10:duration=1", "-pix_fmt", "yuv420p", str(blank)], check=True)
        with pytest.raises(Exception, match="No face found in the video") as err:
            client.predict(handle_file(str(blank)), 60, api_name="/video")
        assert "already aligned" not in str(err.value)
    finally:
        page.close()


@pytest.mark.slow
@needs_chromium
def test_browser_video_tab(tiny_checkpoint, source, tmp_path):
    """In headless Chromium: the Video tab with the 5 s clip: progress in frames, Cancel (no files or ffmpeg left),
    then a finished clip that plays in the page. Screenshots go to $SAM_SCREENSHOT_DIR (default: a temporary
    folder)."""
    import web

    shots = screenshot_dir(tmp_path)
    demo = web.build_demo(str(tiny_checkpoint), device="cpu")
    pipe = demo.sam_app.pipe
    real_render = pipe.render
    with open_page(demo, 1400, 1000) as page:
        try:
            _drive_video_tab(page, source, demo.sam_app, real_render, shots)
        except Exception:
            page.screenshot(path=str(shots / "video-tab-failure.png"), full_page=True)
            raise
        finally:
            pipe.render = real_render


def _drive_video_tab(page: Any, source: Path, sam_app: Any, real_render: Any, shots: Path) -> None:
    from tests.test_app import _ffmpeg_children

    status = "#clip-status"  # the Video tab's own status line
    pipe = sam_app.pipe
    page.get_by_role("tab", name="Video", exact=True).click()
    page.locator("#clip-input input[type=file]").set_input_files(str(source))
    page.locator("#clip-input").get_by_text("astronaut.mp4").wait_for(timeout=patient(90_000))

    pipe.render = lambda *a, **k: time.sleep(0.1) or real_render(*a, **k)  # time to see it and cancel
    page.locator("#clip-button").click()
    page.wait_for_function("() => /([3-9]|[1-9][0-9])\\/125/.test(document.body.innerText)", timeout=patient(60_000))
    page.locator("#clip-video").get_by_text("s left").wait_for(timeout=patient(10_000))
    progress_text = page.locator("#clip-video").inner_text()
    page.screenshot(path=str(shots / "video-tab-progress.png"), full_page=True)
    page.locator("#clip-cancel").click()
    page.locator(status).get_by_text("Video cancelled").wait_for(timeout=patient(10_000))
    deadline = time.monotonic() + 20
    while (_ffmpeg_children() or list(sam_app.workdir.glob("*"))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _ffmpeg_children() and not list(sam_app.workdir.glob("*"))
    page.screenshot(path=str(shots / "video-tab-cancelled.png"), full_page=True)

    pipe.render = real_render
    page.locator("#clip-button").click()
    page.locator(status).get_by_text("Video ready").wait_for(timeout=patient(180_000))
    page.locator("#clip-video video").wait_for(timeout=patient(30_000))
    page.wait_for_function("() => { const v = document.querySelector('#clip-video video'); "
                           "return v && v.readyState >= 2 && v.duration > 4.9; }", timeout=patient(30_000))
    played = page.evaluate("async () => { const v = document.querySelector('#clip-video video'); "
                           "v.muted = true; v.currentTime = 0; await v.play(); "
                           "await new Promise(r => setTimeout(r, 1500)); "
                           "return [v.currentTime, v.duration, v.videoWidth, v.videoHeight, v.error]; }")
    page.screenshot(path=str(shots / "video-tab-done.png"), full_page=True)
    print(f"\nprogress shown: {progress_text!r}; played: {played}; status: {page.locator(status).inner_text()!r}")
    assert played[0] > 0.5 and abs(played[1] - 5.0) < 0.1 and played[2:4] == [320, 240]
    assert played[4] is None
    assert "125 frames at 25 fps, 1 person aged, sound copied" in page.locator(status).inner_text()
    assert page.locator("#clip-file a").count() >= 1  # downloadable


def test_tracker_keeps_numbers_when_a_face_is_hidden_and_comes_back():
    """Two people; the right one is covered for 8 frames: not aged meanwhile, same numbers before and after,
    no third person."""
    photo = Image.open(ASTRONAUT).convert("RGB").resize((240, 240))
    frames = []
    for i in range(30):
        canvas = Image.new("RGB", (480, 240), (40, 40, 40))
        canvas.paste(photo, (0 + i // 3, 0))
        canvas.paste(photo, (240, 0))
        if 9 <= i < 17:
            canvas.paste((90, 90, 90), (300, 0, 480, 240))  # a hand in front of the right face
        frames.append(canvas)
    tracker = FaceTracker(faces="all")
    seen = []
    for i, f in enumerate(frames):
        seen.append({tr.id: float(tr.box[0]) for tr in tracker.step(f, i / FPS)})
    assert len(tracker.tracks) == 2
    left = next(iter(k for k, x in seen[0].items() if x < 240))
    right = 1 - left
    assert all(s[left] < 240 for s in seen)  # the left person: every frame, always number `left`
    assert all(right not in s for s in seen[10:17])  # hidden: not aged
    assert all(right in s and s[right] > 240 for s in seen[:9] + seen[18:])  # back with the same number


@pytest.mark.parametrize("audio, expected", [("libopus", "copied"), ("libvorbis", "re-encoded to AAC")])
def test_clip_from_webm(pipe, short_clip, tmp_path, audio, expected):
    """WebM (VP8): Opus sound is copied into the MP4 as it is; Vorbis, which MP4 cannot hold, becomes AAC."""
    webm = tmp_path / "clip.webm"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(short_clip), "-c:v", "libvpx",
                    "-b:v", "1M", "-c:a", audio, str(webm)], check=True)
    info = probe.probe_clip(webm)
    out = clip.age_clip(pipe, info, tmp_path / "out.mp4", 40, end=0.2)
    assert out.audio.startswith(expected) and out.frames == info.frames == 30
    assert probe.probe_clip(out.path).audio_codec == ("opus" if audio == "libopus" else "aac")


# --------------------------------------------------------------------------------------------- key frames


def every_frame_codes(pipe: AgingPipeline, info: probe.ClipInfo, age: int) -> dict[tuple[int, int], torch.Tensor]:
    """The codes of the landed per-frame loop (commit 920ea10): both encoders on every frame, smoothed per person."""
    from sam.pipeline import EncodedFace

    quick = min(256, pipe.output_size) < pipe.output_size
    tracker = FaceTracker()
    out = {}
    for i, arr in enumerate(probe.read_frames(info)):
        frame, t = Image.fromarray(arr), i / float(info.fps)
        for tr in tracker.step(frame, t):
            image = ffhq_align(frame, tr.smooth, pipe.input_size)[0]
            enc = pipe.encode(image, cache=False)
            smoothed = EncodedFace(rgb=enc.rgb, pretrained_codes=tr.pretrained(t, enc.pretrained_codes))
            out[i, tr.id] = tr.code(t, pipe.latents(smoothed, [age], fast=quick)).float().cpu()
    return out


def test_key_frames_1_is_every_frame_encoding(pipe, short_clip, tmp_path):
    """With a key frame on every frame the codes are exactly the old every-frame ones, threads or not."""
    info = probe.probe_clip(short_clip)
    want = every_frame_codes(pipe, info, 60)
    for overlap in (False, True):
        res = clip.age_clip(pipe, info, tmp_path / f"{overlap}.mp4", 60, key_frames=1, overlap=overlap, trace=True)
        got = {(f.frame, f.face): f.code for f in res.trace}
        assert res.key_frames == info.frames and all(f.key for f in res.trace)
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_auto_key_frames_are_few_and_close_to_every_frame(aged, pipe, source):
    """The 5 s clip (auto): under a third of the frames encoded, never more than KEY_MAX_SECONDS apart, and the
    codes within 2 % of the every-frame codes' range."""
    keys = [f.frame for f in aged.trace if f.key]
    gaps = np.diff(keys)
    want = every_frame_codes(pipe, probe.probe_clip(source), 70)
    diff = max((f.code - want[f.frame, f.face]).abs().max().item() for f in aged.trace)
    scale = max(c.abs().max().item() for c in want.values())
    print(f"\nauto: {len(keys)} key frames of {aged.frames}, gaps {gaps.min()}-{gaps.max()}; largest code difference "
          f"{diff:.4f} (codes up to {scale:.2f})")
    assert keys[0] == 0 and aged.key_frames == len(keys) < aged.frames / 3
    assert gaps.max() <= round(keyframes.KEY_MAX_SECONDS * FPS)
    assert keys[-1] == aged.frames - 1  # the end: the last held frames get their own key frame
    assert diff < 0.02 * scale


def test_key_frame_at_a_cut(pipe, tmp_path):
    """A cut to a different face at the same place (same person number): a key frame right there."""
    photo = Image.open(ASTRONAUT).convert("RGB").resize((220, 220))
    frames = []
    for i in range(24):
        canvas = Image.new("RGB", (320, 240), (40, 40, 40))
        canvas.paste(photo if i < 12 else photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).point(
            lambda v: min(255, int(v * 0.6 + 60))), (50, 10))
        frames.append(np.asarray(canvas))
    path = tmp_path / "cut.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", "320x240", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "16",
                    str(path)], input=b"".join(f.tobytes() for f in frames), check=True)
    res = clip.age_clip(pipe, path, tmp_path / "out.mp4", 40, trace=True)
    keys = [f.frame for f in res.trace if f.key]
    print(f"\nkey frames around a cut at frame 12: {keys}")
    assert any(12 <= k <= 13 for k in keys)
    with pytest.raises(RequestError, match="key frames must be"):
        clip.age_clip(pipe, path, tmp_path / "x.mp4", 40, key_frames=0)


def test_batched_encoders_match_one_at_a_time(pipe):
    """Key frames go through the encoders in batches on a GPU: the same codes as one by one (checked on CPU)."""
    photo = Image.open(ASTRONAUT).convert("RGB")
    images = [photo.rotate(a).resize((pipe.input_size,) * 2) for a in (0, 5, -5)]
    one, three = pipe.encode_frames(images, batch=1), pipe.encode_frames(images, batch=3)
    assert one.shape[0] == 3 and torch.allclose(one, three, atol=1e-4)
    a, b = pipe.codes_at(images, one, 50, batch=1), pipe.codes_at(images, one, 50, batch=2)
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a[0], a[1])


def test_clip_batched_and_sized_like_the_face(pipe, short_clip, tmp_path):
    """A batch of 2 faces per pass on CPU runs the whole job; above 256 px faces render at the size they need."""
    res = clip.age_clip(pipe, short_clip, tmp_path / "b.mp4", 50, faces="all", batch=2)
    assert res.faces == {0: 30}
    assert clip._render_side(256, 40, 1024) == 256  # never below what was asked for
    assert clip._render_side(1024, 180, 1024) == 256 and clip._render_side(1024, 300, 1024) == 512
    assert clip._render_side(1024, 900, 1024) == 1024 and clip._render_side(512, 900, 1024) == 512


def test_video_leaves_the_photo_cache_alone(pipe, short_clip, tmp_path):
    """Video frames never go through the pipeline's per-face cache: a photo's face stays cached."""
    photo = Image.open(ASTRONAUT).convert("RGB").resize((pipe.input_size,) * 2)
    pipe.encode(photo)
    cached = list(pipe._cache)
    clip.age_clip(pipe, short_clip, tmp_path / "v.mp4", 50)
    assert list(pipe._cache) == cached and len(cached) >= 1


def test_clip_span_without_frames_says_so(pipe, source, tmp_path):
    """A start after the last frame (but before the clip's end) holds no frames: said so, not "no face"."""
    with pytest.raises(RequestError, match="no frame of the video lies between 4.99 s"):
        clip.age_clip(pipe, source, tmp_path / "x.mp4", 70, start=4.99)
    with pytest.raises(RequestError, match="past the end"):
        clip.age_clip(pipe, source, tmp_path / "x.mp4", 70, start=10, end=0)
    assert list(tmp_path.iterdir()) == []


def test_clip_with_16_channel_sound_keeps_the_video(pipe, short_clip, tmp_path):
    """16-channel PCM (which AAC in MP4 cannot hold as it is): downmixed, and the finished video is never lost."""
    mkv = tmp_path / "many.mkv"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(short_clip), "-f", "lavfi",
                    "-i", "sine=frequency=440:duration=1.2", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-ac", "16", "-c:a", "pcm_s16le", str(mkv)], check=True)
    info = probe.probe_clip(mkv)
    assert info.audio_codec.startswith("pcm")
    out = clip.age_clip(pipe, info, tmp_path / "out.mp4", 40, end=0.2)
    print(f"\n16-channel PCM: audio {out.audio}")
    assert out.audio.startswith(("downmixed", "re-encoded", "none: the sound"))
    assert probe.probe_clip(out.path).frames == 30


def test_cli_video_refuses_in_one_line(source, tiny_checkpoint, tmp_path):
    """Bad ages, a non-MP4 name, an unwritable place, bad key frames: one line each, nothing written."""
    from sam.cli import main

    base = ["video", "--input", str(source), "--checkpoint_path", str(tiny_checkpoint), "--device", "cpu"]
    out = ["--output", str(tmp_path / "a.mp4")]
    for extra, words in [(out + ["--target_age", "nan"], "--target_age: target age must be a number"),
                         (out + ["--target_age", "-5"], "--target_age: target age must be between 0 and 100"),
                         (["--output", str(tmp_path / "a.gif")], "a.gif: .*ending in .mp4, .m4v or .mov"),
                         (["--output", "/proc/no-such-place/a.mp4"], "cannot write /proc/no-such-place/a.mp4"),
                         (out + ["--key_frames", "0"], "--key_frames must be auto or a whole number")]:
        with pytest.raises(SystemExit, match=words) as err:
            main(base + extra)
        assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_video_sigterm_leaves_nothing(source, tiny_checkpoint, tmp_path):
    """SIGTERM while frames are written: the job's cleanup runs (no partial files), exit code 130."""
    import signal
    import sys

    folder = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sam", "video", "--input", str(source), "--output",
                             str(folder / "x.mp4"), "--checkpoint_path", str(tiny_checkpoint), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parents[1])
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not list(folder.glob("*.partial-video.mp4")):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(folder.iterdir()) == []


def test_still_face_key_codes_are_averaged_and_a_changed_face_is_not():
    """auto: a face that has not changed since its last key frame takes 1 - exp(-gap / KEY_STILL_TAU) of its new
    key codes; a changed face, a cut, a first key frame or an explicit N take them whole."""
    from types import SimpleNamespace

    coder = keyframes.KeyFrameCoder(None, 70, FPS)
    sig = np.zeros((4, 4), np.float32)
    key = SimpleNamespace(t=1.0, sig=sig)
    still = SimpleNamespace(track=SimpleNamespace(key=key), cut=False, sig=sig + 0.5)
    want = 1 - np.exp(-0.4 / keyframes.KEY_STILL_TAU)
    assert coder._still_weight(still, 1.4) == pytest.approx(want) and want < 0.6
    changed = SimpleNamespace(track=SimpleNamespace(key=key), cut=False, sig=sig + keyframes.KEY_CHANGE)
    assert coder._still_weight(changed, 1.4) == 1.0
    assert coder._still_weight(SimpleNamespace(track=SimpleNamespace(key=key), cut=True, sig=sig), 1.4) == 1.0
    assert coder._still_weight(SimpleNamespace(track=SimpleNamespace(key=None), cut=False, sig=sig), 1.4) == 1.0
    assert keyframes.KeyFrameCoder(None, 70, FPS, key_frames=5)._still_weight(still, 1.4) == 1.0


def test_still_averaging_steadies_the_codes_on_the_still_segment(aged, pipe, source, monkeypatch, tmp_path):
    """The same clip without the averaging: its codes jump more from frame to frame on the still segment."""
    def jitter(result: clip.ClipResult) -> float:
        codes = [f.code for f in sorted(result.trace, key=lambda f: f.frame) if f.frame in STILL and f.face == 0]
        return float(np.mean([(b - a).abs().mean().item() for a, b in zip(codes, codes[1:])]))

    monkeypatch.setattr(keyframes, "KEY_STILL_TAU", 0.0)
    plain = clip.age_clip(pipe, source, tmp_path / "plain.mp4", 70, trace=True)
    print(f"\ncode change per frame on the still segment: {jitter(aged):.5f} averaged, {jitter(plain):.5f} not")
    assert jitter(aged) < 0.9 * jitter(plain)


def test_the_clip_is_counted_in_its_turn_not_before(page, source, monkeypatch):
    """The frames of a clip are counted (decoded) only once its job has its turn in the line of long jobs: while
    another video holds the line nothing is decoded, however many clips wait; the header is checked at once."""
    import threading

    import web.service

    a = page.sam_app
    counted = []
    real_probe = web.service.probe_clip
    monkeypatch.setattr(web.service, "probe_clip", lambda *args, **kw: counted.append(1) or real_probe(*args, **kw))
    stop = threading.Event()
    outcome = []

    def wait_in_line():
        try:
            a.age_video(str(source), 70, output_size=32, should_stop=stop.is_set, owner="b")
        except Exception as exc:  # noqa: BLE001 - recorded: the cancel below
            outcome.append(type(exc).__name__)

    with a.scheduler.long_jobs.turn("a", "video", 10):
        t = threading.Thread(target=wait_in_line, daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while a.scheduler.long_jobs.snapshot() != (1, 1):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        assert counted == []  # waiting: nothing decoded yet
        stop.set()
    t.join(30)
    assert outcome == ["JobCancelledError"] and counted == []
    with pytest.raises(RequestError, match="the start \\(9 s\\) is past the end of the video"):
        a.age_video(str(source), 70, output_size=32, start=9)  # the header's length: refused before any wait
    assert counted == []
