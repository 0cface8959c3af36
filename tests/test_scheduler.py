"""The order of model work (sam/serving/scheduler.py): the priority model lock, the fair line of long jobs, and the one
Scheduler object that holds them for an app. Threads and events only, no models; every wait is bounded."""

from __future__ import annotations

import threading
import time

import pytest

from sam.cancel import JobCancelledError
from sam.serving.scheduler import (
    BACKGROUND,
    INTERACTIVE,
    LONG,
    JobLimitError,
    LongJobs,
    ModelLock,
    Scheduler,
    Urgency,
    describe_wait,
)


def _wait_for(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _queue_up(lock: ModelLock, levels: list, order: list) -> list[threading.Thread]:
    """Start one thread per level, each waiting on ``lock`` (held by the caller), in the given arrival order."""
    threads = []
    for i, level in enumerate(levels):
        def take(level=level, i=i):
            lock.acquire(level)
            try:
                order.append((level, i))
            finally:
                lock.release()
        t = threading.Thread(target=take, daemon=True)
        t.start()
        _wait_for(lambda n=i + 1: sum(lock.waiting().values()) == n)
        threads.append(t)
    return threads


def test_priority_first_then_arrival_order():
    lock = ModelLock(max_passed_over=100)
    order: list = []
    lock.acquire(LONG)
    threads = _queue_up(lock, [BACKGROUND, LONG, INTERACTIVE, LONG, INTERACTIVE], order)
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [(INTERACTIVE, 2), (INTERACTIVE, 4), (LONG, 1), (LONG, 3), (BACKGROUND, 0)]


def test_passed_over_calls_are_not_starved():
    """A long call passed over by more urgent calls goes next after ``max_passed_over`` of them."""
    lock = ModelLock(max_passed_over=2)
    order: list = []
    lock.acquire(INTERACTIVE)
    threads = _queue_up(lock, [LONG, INTERACTIVE, INTERACTIVE, INTERACTIVE, INTERACTIVE], order)
    lock.release()
    for t in threads:
        t.join(5)
    assert [lvl for lvl, _ in order] == [INTERACTIVE, INTERACTIVE, LONG, INTERACTIVE, INTERACTIVE]


def test_lock_is_reentrant_and_thread_priority_is_scoped():
    urgency = Urgency()
    lock = ModelLock(urgency)
    assert urgency.current() == INTERACTIVE
    with urgency.priority(BACKGROUND):
        assert urgency.current() == BACKGROUND
        with lock, lock:
            assert lock.locked()
        assert not lock.locked()
    assert urgency.current() == INTERACTIVE
    assert lock.grants[BACKGROUND] == 1
    with pytest.raises(RuntimeError):
        lock.release()


def test_long_jobs_one_at_a_time_in_order_with_place_and_estimate():
    jobs = LongJobs(max_waiting=4, poll_s=0.01, report_every_s=0.0)
    first_started, release_first = threading.Event(), threading.Event()
    started: list[str] = []
    reports: dict[str, list[str]] = {"b": [], "c": []}

    def run(name: str, units: int, gate: threading.Event | None = None):
        with jobs.turn(name, "video", units, report=reports.get(name, []).append) as job:
            started.append(name)
            if gate is not None:
                first_started.set()
                gate.wait(5)
            for i in range(units):
                job.progress(i + 1)

    a = threading.Thread(target=run, args=("a", 10, release_first), daemon=True)
    a.start()
    assert first_started.wait(5)
    b = threading.Thread(target=run, args=("b", 4), daemon=True)
    b.start()
    _wait_for(lambda: jobs.snapshot() == (1, 1))
    c = threading.Thread(target=run, args=("c", 4), daemon=True)
    c.start()
    _wait_for(lambda: jobs.snapshot() == (1, 2) and reports["c"])
    assert started == ["a"]
    assert reports["b"][0].startswith("1 job ahead of you") and reports["c"][-1].startswith("2 jobs ahead of you")
    release_first.set()
    for t in (a, b, c):
        t.join(5)
    assert started == ["a", "b", "c"] and jobs.snapshot() == (0, 0)
    assert "video" in jobs.rates  # the next estimate has a pace to go by


def test_one_long_job_per_visitor_and_a_full_line():
    jobs = LongJobs(max_waiting=1, poll_s=0.01)
    with jobs.turn("visitor", "video", 5):
        with pytest.raises(JobLimitError, match="already have a video"):
            with jobs.turn("visitor", "lifespan", 5):
                pass
        waiting = threading.Thread(target=lambda: jobs.turn("other", "video", 5).__enter__(), daemon=True)
        waiting.start()
        _wait_for(lambda: jobs.snapshot() == (1, 1))
        with pytest.raises(JobLimitError, match="too many videos"):
            with jobs.turn("third", "video", 5):
                pass


def test_a_cancelled_job_leaves_the_line_and_frees_its_visitor():
    jobs = LongJobs(poll_s=0.01)
    cancelled = threading.Event()
    outcome: list = []

    def wait_then_cancel():
        try:
            with jobs.turn("v2", "video", 5, should_stop=cancelled.is_set):
                outcome.append("ran")
        except JobCancelledError:
            outcome.append("cancelled")

    with jobs.turn("v1", "video", 5, should_stop=cancelled.is_set):
        t = threading.Thread(target=wait_then_cancel, daemon=True)
        t.start()
        _wait_for(lambda: jobs.snapshot() == (1, 1))
        cancelled.set()
        t.join(5)
        assert outcome == ["cancelled"] and jobs.snapshot() == (1, 0)
        assert not jobs.owner_busy("v1")  # cancelled: winding down, its visitor may start another job


def test_a_job_cancelled_while_waiting_never_takes_its_turn():
    """The running job ends at the same moment as the waiting one is cancelled (what a client that cancels all
    its jobs at once does): the waiting one must not start, even though the turn is free when it wakes up."""
    jobs = LongJobs(poll_s=5.0)  # a long poll: the waiter wakes only on the release's notify
    cancelled = threading.Event()
    outcome: list = []

    def waiter():
        try:
            with jobs.turn("v2", "video", 5, should_stop=cancelled.is_set):
                outcome.append("ran")
        except JobCancelledError:
            outcome.append("cancelled")

    t = threading.Thread(target=waiter, daemon=True)
    with jobs.turn("v1", "video", 5):
        t.start()
        _wait_for(lambda: jobs.snapshot() == (1, 1))
        time.sleep(0.05)  # the waiter is asleep in its poll
        cancelled.set()
    t.join(5)
    assert outcome == ["cancelled"]


@pytest.mark.parametrize(("ahead", "seconds", "text"), [
    (1, None, "1 job ahead of you"),
    (2, 170.0, "2 jobs ahead of you, about 3 min"),
    (3, 12.0, "3 jobs ahead of you, about 15 s"),
])
def test_describe_wait(ahead, seconds, text):
    assert describe_wait(ahead, seconds) == text


def test_long_work_waits_between_the_passes_of_an_interactive_request():
    """While a visitor's request is in progress, a video's pass waits for the request to end (or at most
    ``hold_back_s``), so the request's passes run back to back."""
    urgency = Urgency()
    lock = ModelLock(urgency, hold_back_s=30.0)
    got = threading.Event()

    def long_pass():
        with urgency.priority(LONG), lock:
            got.set()

    with urgency.interactive_request():
        with lock:
            t = threading.Thread(target=long_pass, daemon=True)
            t.start()
            _wait_for(lambda: lock.waiting()[LONG] == 1)
        time.sleep(0.3)  # the lock is free, but the request is not over
        assert not got.is_set()
        with lock:  # the request's next pass goes first
            pass
    assert got.wait(5)  # the request ended: the video goes on
    t.join(5)


def test_long_work_is_held_back_for_a_bounded_time():
    urgency = Urgency()
    lock = ModelLock(urgency, hold_back_s=0.2)
    with urgency.interactive_request():
        began = time.monotonic()
        with urgency.priority(BACKGROUND), lock:
            waited = time.monotonic() - began
    assert 0.15 <= waited < 5


def test_two_schedulers_do_not_share_their_order():
    """One app's interactive requests and stopping leave another app's order alone (no module globals)."""
    a, b = Scheduler(), Scheduler()
    with a.interactive_request():
        assert a.urgency.interactive_requests() == 1 and b.urgency.interactive_requests() == 0
    a.stop()
    stop_a, stop_b = a.should_stop(), b.should_stop(lambda: False)
    assert stop_a() and not stop_b()
    assert a.long_jobs.stopping is a.stopping and b.long_jobs.stopping.is_set() is False


def test_a_stopping_scheduler_lets_no_waiting_job_start():
    scheduler = Scheduler(max_waiting=2, poll_s=0.01)
    outcome: list = []

    def waiter():
        try:
            with scheduler.long_jobs.turn("v2", "video", 5):
                outcome.append("ran")
        except JobCancelledError:
            outcome.append("cancelled")

    t = threading.Thread(target=waiter, daemon=True)
    with scheduler.long_jobs.turn("v1", "video", 5):
        t.start()
        _wait_for(lambda: scheduler.long_jobs.snapshot() == (1, 1))
        scheduler.stop()
        t.join(5)
    assert outcome == ["cancelled"]


def test_one_address_holds_at_most_its_share_of_the_line():
    """Several sessions from one address (one client) hold at most ``max_per_address`` places; another address
    still gets in."""
    jobs = LongJobs(max_waiting=8, poll_s=0.01, max_per_address=2)
    with jobs.turn("s1", "video", 5, address="10.0.0.1"):
        waiting = threading.Thread(target=lambda: jobs.turn("s2", "video", 5, address="10.0.0.1").__enter__(),
                                   daemon=True)
        waiting.start()
        _wait_for(lambda: jobs.snapshot() == (1, 1))
        with pytest.raises(JobLimitError, match="2 videos from your connection"):
            with jobs.turn("s3", "video", 5, address="10.0.0.1"):
                pass
        other = threading.Thread(target=lambda: jobs.turn("s4", "video", 5, address="10.0.0.2").__enter__(),
                                 daemon=True)
        other.start()
        _wait_for(lambda: jobs.snapshot() == (1, 2))  # another visitor is not held back by that client
