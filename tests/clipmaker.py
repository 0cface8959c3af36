"""Test clips made on the spot: the astronaut photo still, then moved, scaled and slightly rotated, with sensor-like
noise on every frame and a sine-tone sound track, encoded with the ffmpeg binary of imageio-ffmpeg.

Shared by ``tests/test_clip.py``, the app's browser test and ``bench/video_benchmark.py``.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "assets" / "astronaut.png"


def clip_frames(seconds: float = 5.0, fps: int = 25, size: tuple[int, int] = (320, 240), still: float = 2.0,
                noise: float = 3.0, seed: int = 0) -> list[np.ndarray]:
    """Frames: the photo still for ``still`` seconds, then drifting sideways, growing and tilting a little."""
    w, h = size
    photo = Image.open(ASTRONAUT).convert("RGB")
    side = int(h * 1.1)
    photo = photo.resize((side, side), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(round(seconds * fps)):
        t = i / fps
        m = max(0.0, t - still) / max(seconds - still, 1e-6)  # 0 while still, then 0 -> 1
        scale = 1.0 + 0.15 * m
        angle = 6.0 * math.sin(2 * math.pi * m)
        dx, dy = 30.0 * math.sin(math.pi * m), 10.0 * m
        layer = photo.resize((round(side * scale),) * 2, Image.Resampling.BILINEAR).rotate(
            angle, Image.Resampling.BILINEAR, fillcolor=(40, 40, 40))
        canvas = Image.new("RGB", size, (40, 40, 40))
        canvas.paste(layer, (round((w - layer.width) / 2 + dx), round((h - layer.height) / 2 + dy - 0.05 * h)))
        arr = np.asarray(canvas, dtype=np.float32) + rng.normal(0.0, noise, (h, w, 3))
        out.append(np.uint8(np.clip(np.rint(arr), 0, 255)))
    return out


def make_clip(path: Path, seconds: float = 5.0, fps: int = 25, size: tuple[int, int] = (320, 240),
              audio: bool = True, still: float = 2.0, extra: list[str] | None = None) -> Path:
    """Write the clip (H.264, and a 440 Hz AAC tone as long as the picture when ``audio``)."""
    frames = clip_frames(seconds, fps, size, still)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{size[0]}x{size[1]}", "-r", str(fps), "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "16", *(extra or []), str(path)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def streams(path: Path) -> str:
    """ffmpeg's description of a file's streams (its stderr of ``ffmpeg -i``)."""
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True)
    return done.stderr.decode(errors="replace")
