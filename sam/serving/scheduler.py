"""Who runs the networks next: the one place that orders model work when many people share one machine.

A public Space often has two CPU cores and many visitors. Two rules keep it usable for all of them:

1. **Interactive work first.** :class:`ModelLock` lets one network pass run at a time (memory stays bounded: one
   set of activations), and when it is free it goes to the most urgent waiting call. The urgency of a call is the
   :func:`priority` of the thread that makes it:

   * :data:`INTERACTIVE` (default): slider previews, face picks, full-resolution renders, style mixing;
   * :data:`LONG`: lifespan videos, video clips, the ages strip;
   * :data:`BACKGROUND`: the key-age warm-up and the start-up warm-up.

   Calls of the same priority go in arrival order. Long work takes the lock again for every image or frame, so a
   slider waits for at most the one pass that is running. An interactive request makes several passes (its
   encoder, its generator, a second preview); while one is in progress (:func:`interactive_request`), less
   urgent calls are held back between its passes too, so that a visitor's request is not cut in pieces. No one
   starves: a waiting call that has been passed over :data:`MAX_PASSED_OVER` times by more urgent calls, or held
   back for :data:`HOLD_BACK_S` seconds, goes next, so a video keeps moving (more slowly) while sliders move.

2. **Fair long jobs.** :class:`LongJobs` lets one long job (a video) compute at a time; the others wait in
   arrival order, each told its place and an estimate ("2 jobs ahead of you, about 3 min"). One visitor (a page,
   a client session) may have one long job waiting or running, and one address (where visitors connect from: one
   client may open many sessions) two; more get a :class:`JobLimitError` in words. A waiting job polls its
   ``should_stop`` and leaves the line at once when cancelled.

One :class:`Scheduler` holds all of it for one app: the model lock (which the app hands to its pipeline), the
line of long jobs, the jobs running now, and ``stopping``, set when the server is asked to stop (SIGTERM): every
job's ``should_stop`` reads it. No module globals: a test, or a second app in one process, makes its own. Nothing
here knows about Gradio or models; the pipeline takes whatever lock it is given (:mod:`sam.pipeline`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from sam.cancel import JobCancelledError, ShouldStop

__all__ = [
    "Priority", "INTERACTIVE", "LONG", "BACKGROUND", "MAX_PASSED_OVER", "HOLD_BACK_S", "Urgency", "ModelLock",
    "LongJobs", "LongJob", "JobLimitError", "JobCancelledError", "describe_wait", "RunningJobs", "Scheduler",
]


class JobLimitError(ValueError):
    """A long job cannot be taken now (this visitor has one already, or the line is full); the message says why."""


class Priority(IntEnum):
    """Smaller is more urgent."""

    INTERACTIVE = 0
    LONG = 1
    BACKGROUND = 2


INTERACTIVE, LONG, BACKGROUND = Priority.INTERACTIVE, Priority.LONG, Priority.BACKGROUND
MAX_PASSED_OVER = 3
"""A waiting call passed over this many times by more urgent calls goes next (long work is never starved)."""
HOLD_BACK_S = 2.0
"""The longest a less urgent call is held back while interactive requests are in progress."""

class Urgency:
    """How urgent the model calls are: the priority of each thread's calls, and how many interactive requests are in
    progress (one machine, one order: the app has one of these, in its :class:`Scheduler`)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._activity = threading.Condition()
        self._interactive = 0

    def current(self) -> Priority:
        """The priority of model calls made by this thread (:data:`INTERACTIVE` unless :meth:`priority` says)."""
        return getattr(self._local, "priority", INTERACTIVE)

    @contextlib.contextmanager
    def priority(self, level: Priority) -> Iterator[None]:
        """Model calls made by this thread inside the block have priority ``level``."""
        before = self.current()
        self._local.priority = Priority(level)
        try:
            yield
        finally:
            self._local.priority = before

    @contextlib.contextmanager
    def interactive_request(self) -> Iterator[None]:
        """Mark an interactive request (a slider move, a face pick, ...) in progress for its whole length, so that
        long and background work waits between its passes too (see the module notes)."""
        with self._activity:
            self._interactive += 1
        try:
            yield
        finally:
            with self._activity:
                self._interactive -= 1
                self._activity.notify_all()

    def interactive_requests(self) -> int:
        """How many interactive requests are in progress."""
        with self._activity:
            return self._interactive


@dataclass(eq=False)
class _Ticket:
    level: Priority
    seq: int
    passed: int = 0
    since: float = field(default_factory=time.monotonic)


class ModelLock:
    """A re-entrant lock granted by priority (see the module notes): one network pass at a time.

    Used as ``with lock:`` (the calling thread's priority, from ``urgency``) or ``lock.acquire(level)``.
    Re-entrant for the thread that holds it. ``grants`` counts grants per priority (for tests and the load
    benchmark).
    """

    def __init__(self, urgency: Urgency | None = None, max_passed_over: int = MAX_PASSED_OVER,
                 hold_back_s: float = HOLD_BACK_S):
        self.urgency = urgency or Urgency()
        self.max_passed_over = max(1, int(max_passed_over))
        self.hold_back_s = float(hold_back_s)
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._waiting: list[_Ticket] = []
        self._seq = itertools.count()
        self.grants = {p: 0 for p in Priority}

    def _next(self) -> _Ticket | None:
        """The ticket to grant now (``None``: nobody may go yet)."""
        if not self._waiting:
            return None
        starved = [t for t in self._waiting if t.passed >= self.max_passed_over]
        if starved:
            return min(starved, key=lambda t: t.seq)
        best = min(self._waiting, key=lambda t: (t.level, t.seq))
        if best.level == INTERACTIVE or self.urgency.interactive_requests() == 0:
            return best
        return best if time.monotonic() - best.since >= self.hold_back_s else None

    def acquire(self, level: Priority | None = None, blocking: bool = True) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            level = Priority(self.urgency.current() if level is None else level)
            if self._owner is None and not self._waiting and (level == INTERACTIVE
                                                               or self.urgency.interactive_requests() == 0):
                self._take(me, level)
                return True
            if not blocking:
                return False
            ticket = _Ticket(level, next(self._seq))
            self._waiting.append(ticket)
            try:
                while self._owner is not None or self._next() is not ticket:
                    self._cond.wait(0.05)  # also re-checks held-back calls as requests end and time passes
            except BaseException:
                self._waiting.remove(ticket)
                self._cond.notify_all()
                raise
            self._waiting.remove(ticket)
            for other in self._waiting:  # everyone less urgent (or younger) was passed over once more
                if other.level > ticket.level:
                    other.passed += 1
            self._take(me, ticket.level)
            return True

    def _take(self, me: int, level: Priority) -> None:
        self._owner, self._depth = me, 1
        self.grants[level] += 1

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a ModelLock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def locked(self) -> bool:
        with self._cond:
            return self._owner is not None

    def waiting(self) -> dict[Priority, int]:
        """How many calls wait, per priority."""
        with self._cond:
            return {p: sum(t.level == p for t in self._waiting) for p in Priority}

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------------------------- long jobs


def describe_wait(ahead: int, seconds: float | None) -> str:
    """``"2 jobs ahead of you, about 3 min"`` (no estimate when ``seconds`` is unknown)."""
    text = f"{ahead} job{'s' if ahead != 1 else ''} ahead of you"
    if seconds is None or not math.isfinite(seconds):
        return text
    if seconds < 60:
        return f"{text}, about {max(5, int(math.ceil(seconds / 5.0)) * 5)} s"
    return f"{text}, about {int(math.ceil(seconds / 60.0))} min"


@dataclass(eq=False)
class LongJob:
    """One long job in :class:`LongJobs`: its owner, kind and size, and how far it has come."""

    owner: str | None
    kind: str
    units: int  # frames (or images) it will produce
    seq: int
    should_stop: Callable[[], bool] | None = field(default=None, repr=False)
    address: str | None = None  # where the visitor connects from (several sessions may share one)
    started: float | None = None
    done: int = 0
    released: bool = False

    @property
    def holds_owner(self) -> bool:
        """Whether this job still counts as its visitor's one long job (not once it is cancelled: it only winds
        down, at its next frame, and the visitor may start another)."""
        if self.released:
            return False
        try:
            return not (self.should_stop is not None and self.should_stop())
        except Exception:  # noqa: BLE001 - a broken check must not block the visitor
            return False

    def progress(self, done: int, total: int | None = None) -> None:
        """Report ``done`` units (and a better ``total`` when known): it refines everyone's estimate."""
        self.done = int(done)
        if total:
            self.units = int(total)

    def remaining(self, rate: float | None) -> float | None:
        """Seconds this job still needs: from its own pace once it has made some, else from ``rate``."""
        if self.started is not None and self.done > 0:
            pace = (time.monotonic() - self.started) / self.done
            return pace * max(self.units - self.done, 0)
        return None if rate is None else rate * self.units


class LongJobs:
    """At most one long job computing at a time; the rest wait in arrival order (see the module notes).

    >>> jobs = LongJobs()
    >>> with jobs.turn("visitor-1", "video", units=120, should_stop=stop, report=print) as job:
    ...     for i in range(120): render(i); job.progress(i + 1)

    ``max_waiting``: how many jobs may wait (more get a :class:`JobLimitError`). The estimate per job kind is the
    seconds per unit of the last finished job of that kind (unknown before the first one).
    """

    def __init__(self, max_waiting: int = 8, poll_s: float = 0.25, report_every_s: float = 1.0,
                 stopping: threading.Event | None = None, max_per_address: int = 2):
        self.max_waiting = max(0, int(max_waiting))
        self.max_per_address = max(1, int(max_per_address))  # waiting or running, from one address
        self.stopping = stopping or threading.Event()  # set: waiting jobs leave the line at once
        self.poll_s = poll_s
        self.report_every_s = report_every_s
        self._cond = threading.Condition()
        self._line: list[LongJob] = []  # the running job first (when there is one), then the waiting ones
        self._running: LongJob | None = None
        self._seq = itertools.count()
        self.rates: dict[str, float] = {}  # seconds per unit, per kind, from the last finished job

    def owner_busy(self, owner: str | None) -> bool:
        with self._cond:
            return owner is not None and any(j.owner == owner and j.holds_owner for j in self._line)

    def ahead_of(self, job: LongJob) -> tuple[int, float | None]:
        """Jobs ahead of ``job`` and about how many seconds until it starts (``None``: unknown)."""
        with self._cond:
            ahead = [j for j in self._line if j.seq < job.seq]
            total = 0.0
            for j in ahead:
                left = j.remaining(self.rates.get(j.kind))
                if left is None:
                    return len(ahead), None
                total += left
            return len(ahead), total

    def snapshot(self) -> tuple[int, int]:
        """``(running, waiting)`` counts."""
        with self._cond:
            running = int(self._running is not None)
            return running, len(self._line) - running

    @contextlib.contextmanager
    def turn(self, owner: str | None, kind: str, units: int, should_stop: Callable[[], bool] | None = None,
             report: Callable[[str], None] | None = None, address: str | None = None) -> Iterator[LongJob]:
        """Wait for this job's turn (reporting ``"N jobs ahead of you, about T"``), then run the block.

        Raises :class:`JobLimitError` when ``owner`` already has a long job here, when ``address`` (where the
        visitor connects from: one client may open many sessions) has :attr:`max_per_address` of them, or when the
        line is full; and :class:`JobCancelledError` when ``should_stop`` says so (or :attr:`stopping` is set)
        while waiting.
        """
        with self._cond:
            if owner is not None and any(j.owner == owner and j.holds_owner for j in self._line):
                raise JobLimitError("you already have a video waiting or rendering; wait for it to finish or "
                                    "cancel it before starting another one")
            if address is not None and sum(j.address == address and j.holds_owner for j in self._line) \
                    >= self.max_per_address:
                raise JobLimitError(f"{self.max_per_address} videos from your connection are already waiting or "
                                    "rendering on this server; wait for one of them to finish before starting "
                                    "another")
            waiting = len(self._line) - int(self._running is not None)
            if waiting >= self.max_waiting:
                raise JobLimitError("too many videos are waiting on this server right now. Please try again in a "
                                    "few minutes")
            job = LongJob(owner, kind, max(1, int(units)), next(self._seq), should_stop, address)
            self._line.append(job)
        try:
            self._wait_turn(job, should_stop, report)
            yield job
            if job.done and job.started is not None:
                with self._cond:
                    self.rates[kind] = (time.monotonic() - job.started) / job.done
        finally:
            with self._cond:
                job.released = True
                if job in self._line:
                    self._line.remove(job)
                if self._running is job:
                    self._running = None
                self._cond.notify_all()

    def _wait_turn(self, job: LongJob, should_stop: Callable[[], bool] | None,
                   report: Callable[[str], None] | None) -> None:
        last = -math.inf
        while True:
            # checked before the turn is taken too: a job cancelled while it waited never starts
            if self.stopping.is_set() or (should_stop is not None and should_stop()):
                raise JobCancelledError("the job was cancelled while waiting for its turn")
            with self._cond:
                if self._running is None and self._line and self._line[0] is job:
                    self._running = job
                    job.started = time.monotonic()
                    return
            now = time.monotonic()
            if report is not None and now - last >= self.report_every_s:
                last = now
                report(describe_wait(*self.ahead_of(job)))
            with self._cond:
                self._cond.wait(self.poll_s)


class RunningJobs:
    """The jobs running now, so that a stopping server can wait for them to end (each ends at its next frame)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        with self._cond:
            self._count += 1
        try:
            yield
        finally:
            with self._cond:
                self._count -= 1
                self._cond.notify_all()

    @property
    def count(self) -> int:
        with self._cond:
            return self._count

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs (at most ``timeout`` seconds); whether that happened."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count == 0, timeout)


class Scheduler:
    """The order of model work on one machine, owned by the app (see the module notes).

    >>> scheduler = Scheduler(max_waiting=4)
    >>> pipe = AgingPipeline.from_pretrained(lock=scheduler.lock)       # every network pass in priority order
    >>> with scheduler.priority(LONG), scheduler.long_jobs.turn(owner, "video", frames) as turn: ...
    """

    def __init__(self, max_waiting: int = 8, max_passed_over: int = MAX_PASSED_OVER,
                 hold_back_s: float = HOLD_BACK_S, poll_s: float = 0.25, max_per_address: int = 2):
        self.stopping = threading.Event()
        """Set when the server is stopping: running jobs end at their next image or frame, waiting ones at once."""
        self.urgency = Urgency()
        self.lock = ModelLock(self.urgency, max_passed_over, hold_back_s)
        self.long_jobs = LongJobs(max_waiting, poll_s=poll_s, stopping=self.stopping, max_per_address=max_per_address)
        self.running = RunningJobs()

    def priority(self, level: Priority) -> contextlib.AbstractContextManager[None]:
        """Model calls made by this thread inside the block have priority ``level``."""
        return self.urgency.priority(level)

    def interactive_request(self) -> contextlib.AbstractContextManager[None]:
        """An interactive request in progress for the block's whole length (:meth:`Urgency.interactive_request`)."""
        return self.urgency.interactive_request()

    def should_stop(self, *others: ShouldStop | None) -> ShouldStop:
        """A ``should_stop`` that says stop when the server is stopping or any of ``others`` says so."""
        present = [c for c in others if c is not None]
        return lambda: self.stopping.is_set() or any(c() for c in present)

    def stop(self) -> None:
        """The server is stopping: every job's ``should_stop`` says so from now on."""
        self.stopping.set()
