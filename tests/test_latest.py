"""What each visitor did last (web.latest): late answers for an older photo or an older choice never reach the page,
the browser's repeated photo event changes nothing, and work for a replaced photo stops. No model needed."""

from __future__ import annotations

import pytest

from sam.cancel import JobCancelledError, check_stop
from web.latest import STOPPED, Latest


class Visitor:
    """Stands in for the running event's visitor."""

    def __init__(self, name: str | None = "page-1"):
        self.name = name

    def __call__(self) -> str | None:
        return self.name


def test_the_browsers_repeat_is_recognised_per_handler():
    latest = Latest(Visitor())
    assert latest.photo_event("on_photo", "a.png", False)
    assert not latest.photo_event("on_photo", "a.png", False)  # the repeat
    assert latest.photo_event("on_group_photo", "a.png", False)  # another handler sees it once too
    assert latest.photo_event("on_photo", "a.png", True)  # "already aligned" ticked: a new photo event
    assert latest.photo_event("on_photo", None, True)  # cleared
    assert latest.photo_event("on_photo", "a.png", True)  # the same photo again after a clear


def test_updates_for_an_older_photo_are_dropped_and_its_work_stops():
    latest = Latest(Visitor())
    latest.photo_event("on_photo", "a.png")
    ran = []

    def handler(image):
        for step in range(3):
            ran.append(step)
            if step == 0:
                latest.photo_event("on_new_photo", "b.png")  # a new photo arrives meanwhile
            yield {"result": f"{image} {step}", "status": "working"}

    out = list(latest.only_fresh(handler, "status")("a.png"))
    assert out == [{"status": out[0]["status"]}] and ran == [0]  # nothing of a.png shown, the rest not computed
    assert list(latest.only_fresh(handler, "status")("b.png"))[-1] == {"result": "b.png 2", "status": "working"}


def test_a_newer_choice_makes_only_its_topic_stale():
    latest = Latest(Visitor())
    latest.photo_event("on_photo", "a.png")
    moved = []

    def slow_photo(image):
        yield {"picker": "thumbs 1", "result": "first"}
        if not moved:
            moved.append(latest.begin("a.png", ("face",)))  # the visitor moves the slider meanwhile
        yield {"picker": "thumbs 2", "result": "late"}

    topics = {"result": "face"}
    out = list(latest.only_fresh(slow_photo, "status", topics)("a.png"))
    assert out == [{"picker": "thumbs 1", "result": "first"}, {"picker": "thumbs 2"}]

    def slider(image):
        yield {"result": "age 30"}
        latest.begin("a.png", ("face",))  # moved again: this answer is not wanted any more
        yield {"result": "age 30, exact"}
        raise AssertionError("a superseded choice keeps working")

    out = list(latest.only_fresh(slider, "status", topics, starts=("face",))("a.png"))
    assert out == [{"result": "age 30"}, {"status": out[1]["status"]}]


def test_a_job_for_a_replaced_photo_stops_and_says_so():
    latest = Latest(Visitor())
    latest.photo_event("on_photo", "a.png")

    def job(image, *, should_stop=None):
        for frame in range(5):
            check_stop(should_stop)
            if frame == 2:
                latest.photo_event("on_new_photo", "b.png")
        return {"video": "a.mp4", "video_status": "done"}

    wrapped = latest.only_fresh(job, "video_status", said="video_status")
    assert wrapped("a.png", should_stop=lambda: False) == {"video_status": STOPPED}
    assert wrapped("a.png", should_stop=lambda: False) == {"video_status": STOPPED}  # begun for an old photo
    assert wrapped("b.png", should_stop=lambda: False) == {"video": "a.mp4", "video_status": "done"}
    with pytest.raises(JobCancelledError):  # the visitor's own cancel is still a cancel
        wrapped("b.png", should_stop=lambda: True)


def test_visitors_are_apart_and_calls_without_one_are_never_stale():
    who = Visitor("page-1")
    latest = Latest(who)
    latest.photo_event("on_photo", "a.png")
    ticket = latest.begin("a.png", ("face",))
    who.name = "page-2"
    latest.photo_event("on_photo", "b.png")
    latest.begin("b.png", ("face",))
    assert latest.fresh(ticket, "face")  # another page's photo and slider
    who.name = None
    assert latest.photo_event("on_photo", "a.png") and latest.photo_event("on_photo", "a.png")
    assert latest.fresh(latest.begin("x.png", ("face",)), "face")


def test_a_visitor_not_seen_yet_is_fresh_and_the_memory_is_bounded():
    who = Visitor("page-0")
    latest = Latest(who, max_visitors=3)
    assert latest.fresh(latest.begin("a.png"))  # e.g. the first event after a restart
    for i in range(10):
        who.name = f"page-{i}"
        latest.photo_event("on_photo", f"{i}.png")
    assert len(latest._visitors) == 3
