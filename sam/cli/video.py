"""``python -m sam video``: the people in one clip aged (:mod:`sam.video.clip`: tracked, steady, the sound kept),
with a progress bar; SIGTERM or Ctrl-C leaves no partial file."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from sam.ages import to_age
from sam.cli.batch import Summary, complete, load_pipeline
from sam.faces.detect import NoFaceError
from sam.requests import RequestError
from sam.video.clip import age_clip
from sam.video.probe import probe_clip

__all__ = ["MP4_ENDINGS", "cmd_video"]

MP4_ENDINGS = (".mp4", ".m4v", ".mov")  # H.264 MP4 under the names players accept for it


def cmd_video(args) -> int:
    """Age the faces of one video clip (:mod:`sam.video.clip`): tracked, steadily aligned, the sound kept."""
    from tqdm import tqdm

    out = Path(args.output)
    endings = MP4_ENDINGS
    if out.suffix.lower() not in endings:
        raise SystemExit(f"error: --output {out.name}: the video is written as H.264 MP4; give a name ending in "
                         f"{', '.join(endings[:-1])} or {endings[-1]}")
    try:
        to_age(args.target_age)
    except ValueError as exc:
        raise SystemExit(f"error: --target_age: {exc}") from None
    if str(args.key_frames).strip().lower() != "auto" and not str(args.key_frames).strip().isdigit() \
            or str(args.key_frames).strip() == "0":
        raise SystemExit(f"error: --key_frames must be auto or a whole number >= 1, got {args.key_frames!r}")
    if complete(out) and not args.overwrite:
        raise SystemExit(f"error: {out} exists (use --overwrite)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.with_name(out.stem + ".partial-check")
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SystemExit(f"error: cannot write {out}: {exc.strerror or exc}") from None
    try:
        info = probe_clip(args.input)
    except RequestError as exc:
        raise SystemExit(f"error: {args.input}: {exc}") from None
    pipe = load_pipeline(args)
    summary = Summary()
    print(f"{args.input}: {info.frames} frames, {float(info.fps):.3f} fps, {info.duration:.2f} s, "
          f"{info.size[0]}x{info.size[1]}, audio: {info.audio_codec or 'none'}", file=sys.stderr)
    with tqdm(total=info.frames, desc="video", unit="frame", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        def terminated(signum: int, frame: object) -> None:
            raise KeyboardInterrupt  # the job's cleanup runs: no partial files left

        main_thread = threading.current_thread() is threading.main_thread()
        before = signal.signal(signal.SIGTERM, terminated) if main_thread else None
        try:
            key = args.key_frames if str(args.key_frames).strip().lower() == "auto" else int(args.key_frames)
            res = age_clip(pipe, info, out, args.target_age, faces=args.faces, output_size=args.output_size,
                           start=args.start, end=args.end, preview=args.preview, key_frames=key, progress=progress)
        except (RequestError, NoFaceError) as exc:
            summary.failed.append((Path(args.input).name, str(exc)))
            res = None
        except OSError as exc:
            raise SystemExit(f"error: {out}: {exc.strerror or exc}") from None
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, before)
    if res is not None:
        summary.done.append(out.name)
        cost = ", ".join(f"{k} {v / max(res.frames, 1) * 1000:.0f}" for k, v in res.seconds.items())
        print(f"{out}: {res.frames} frames at {float(res.fps):.3f} fps, {res.duration:.2f} s, audio {res.audio}; "
              f"faces (number: frames aged) {res.faces}; {res.frames_per_second:.2f} frames/s "
              f"(ms per frame: {cost})", file=sys.stderr)
    summary.report()
    return summary.exit_code
