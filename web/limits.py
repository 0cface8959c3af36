"""The app's limits, declared once: what one server accepts and keeps, read by the service, the page and the docs.

A public Space often has two CPU cores and many visitors: uploads are bounded in size, clips in length, rate and
frame size, the queue in events, and the line of videos in jobs; results and uploads are deleted after an hour. Tests
and operators make their own :class:`Limits` (``Limits(clip_max_seconds=5)``) instead of changing module constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from sam.requests import RequestError
from sam.serving.scheduler import Scheduler
from sam.video.probe import ClipLimits

__all__ = ["Limits", "STRIP_AGES", "VIDEO_SIZES"]

STRIP_AGES = list(range(0, 101, 10))  # the ages strip's default ages
VIDEO_SIZES = [128, 256, 512, 1024]  # the lifespan video's resolutions (those up to the model's size are offered)


@dataclass(frozen=True)
class Limits:
    """Every limit of one app (defaults: a public Space on two CPU cores)."""

    cache_entries: int = 8  # photos and face sessions kept in memory
    output_max_age_s: float = 3600.0  # results and uploads are deleted after an hour, and when the server stops
    sweep_every_s: float = 300.0  # how often results older than that are deleted
    max_upload_mb: int = 30  # any upload (Gradio's max_file_size; MB of 2**20 bytes)
    upload_space_mb: int = 2048  # all uploads on the server's disk together (they are deleted after an hour)
    upload_mb_per_address: int = 300  # what one address may upload within an hour
    clip_max_mb: int = 30  # the Video tab: file size, length, frame rate, frames, frame size, the side it works at
    clip_max_seconds: float = 20.0
    clip_max_fps: float = 60.0
    clip_max_frames: int = 600  # 20 s at 30 frames per second
    clip_max_pixels: int = 7680 * 4320  # 8K frames at most
    clip_max_side: int = 1280  # frames are worked on with the long side at most this
    lifespan_max_work: int = 2000  # faces x frames x (side / 256 px)^2 one lifespan video may render
    max_queue: int = 16  # events waiting for a slot at once; more get "busy, try again"
    max_queued_per_address: int = 6  # of those, from one address
    long_queue_share: float = 0.5  # of those, videos and strips at most: the rest stays for interactive requests
    max_long_waiting: int = 4  # videos waiting for their turn (sam.serving.scheduler.LongJobs); more are refused
    max_videos_per_address: int = 2  # videos waiting or rendering from one address (one client, many sessions)
    quick_concurrency: int = 4  # quick events (sliders, picks, full resolution, mixing) started at once
    stop_wait_s: float = 20.0  # on SIGTERM, how long running jobs get to reach their next frame and clean up

    @property
    def max_upload(self) -> str:
        """The upload limit as Gradio's ``max_file_size`` takes it."""
        return f"{self.max_upload_mb}mb"

    @property
    def long_concurrency(self) -> int:
        """Long events (videos, the ages strip) started at once: the line's waiting places and two more."""
        return self.max_long_waiting + 2

    def check_lifespan(self, faces: int, frames: int, side: int, between: int) -> None:
        """Refuse, in words, a lifespan video that would render more than :attr:`lifespan_max_work`: ``faces`` faces
        x ``frames`` frames at ``side`` px, counted in faces at 256 px (a 1024 px face costs 16 of them)."""
        work = faces * frames * (side / 256) ** 2
        if work > self.lifespan_max_work:
            who = f"{faces} faces" if faces > 1 else "1 face"
            raise RequestError(f"this video would render {who} x {frames} frames at {side} px, about {work:.0f} "
                               f"faces at 256 px; this server renders at most {self.lifespan_max_work} per video. "
                               f"Choose fewer frames between key ages (now {between}), a smaller size, a shorter "
                               "age range or fewer faces")

    def queue_refusal(self, event: tuple[str, str | None], waiting: list[tuple[str, str | None]],
                      max_queue: int | None = None) -> str | None:
        """Why the event ``(kind, address)`` (its concurrency group, where it comes from) may not wait in the queue
        beside ``waiting`` (the same of every waiting event; ``None``: it may): one
        address holds at most :attr:`max_queued_per_address` waiting events, and long work (kind ``"long"``) at most
        :attr:`long_queue_share` of the queue, so that other visitors' interactive requests keep their room."""
        kind, address = event
        if address is not None and sum(a == address for _, a in waiting) >= self.max_queued_per_address:
            return ("Too many of your requests are waiting on this server right now. Please wait for them to finish, "
                    "or cancel some, and try again.")
        size = self.max_queue if max_queue is None else max_queue
        if kind == "long" and sum(k == "long" for k, _ in waiting) >= max(1, int(size * self.long_queue_share)):
            return "Too many videos are waiting on this server right now. Please try again in a few minutes."
        return None

    def scheduler(self) -> Scheduler:
        """A scheduler for one app with these limits (the line of videos and its per-address share)."""
        return Scheduler(max_waiting=self.max_long_waiting, max_per_address=self.max_videos_per_address)

    def clip_limits(self) -> ClipLimits:
        """What a clip may hold (:func:`sam.video.probe.probe_clip` checks it)."""
        return ClipLimits(seconds=self.clip_max_seconds, frames=self.clip_max_frames, fps=self.clip_max_fps,
                          pixels=self.clip_max_pixels)
