"""What each visitor did last: the newest photo of each page and the newest choice on each of its panels
(:class:`Latest`), so that an answer still being computed for an older photo or an older choice is dropped instead
of overwriting what the visitor did since.

With the real model a new face takes 10 to 80 s on a CPU, and visitors do not wait: they drop a second photo, tick
"everyone", move the slider again. Gradio runs a page's events side by side (and the browser sends ``change`` twice
when one photo replaces another), so answers can arrive late and out of order. The rule, in one place:

- a *photo event* (a photo dropped, replaced or cleared, "already aligned" ticked) makes the page's photo new: every
  answer begun for another photo is dropped from then on, whatever it updates, and the work behind it stops at its
  next image;
- a *choice* (a topic: ``"face"`` for the single face, ``"group"`` for the faces aged together) begun later than an
  answer makes that answer's updates of the same topic stale; its other updates still arrive (a new photo's face
  picker, say, when the slider moved before it came);
- a repeated photo event (the same photo again for the same handler) is recognised, so it neither redoes the work nor
  resets what the visitor chose since.

A visitor is the page's Gradio session; calls without one (tests, scripts) are never stale.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from sam.cancel import JobCancelledError

__all__ = ["Latest", "Ticket", "photo_key", "STOPPED"]

STOPPED = "Stopped: a new photo came, and this was for the previous one."
_UNKNOWN = object()  # a visitor whose photo this server has not seen (e.g. the first event after a restart)


def photo_key(image: Any) -> str | None:
    """What names a photo for these rules: the uploaded file's path (Gradio names an upload by its content), or the
    words of an upload that could not be read."""
    return None if image is None else str(image)


@dataclass
class _Visitor:
    photo: Any = _UNKNOWN
    handled: dict[str, Hashable] = field(default_factory=dict)  # handler -> the photo event it handled last
    marks: dict[str, int] = field(default_factory=dict)  # topic -> how many choices of it were begun


@dataclass(frozen=True)
class Ticket:
    """One answer's place: its visitor, the photo it is for, and the choices begun when it began (its own too)."""

    visitor: str | None
    photo: str | None
    marks: dict[str, int]


class Latest:
    """Per visitor (``visitor()``: the running event's visitor, ``None`` outside one): the newest photo and the
    number of choices begun per topic. At most ``max_visitors`` are remembered (the least recent are forgotten)."""

    def __init__(self, visitor: Callable[[], str | None], max_visitors: int = 4096):
        self._visitor = visitor
        self._max = max_visitors
        self._visitors: OrderedDict[str, _Visitor] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, visitor: str) -> _Visitor:
        state = self._visitors.get(visitor)
        if state is None:
            state = self._visitors[visitor] = _Visitor()
            while len(self._visitors) > self._max:
                self._visitors.popitem(last=False)
        self._visitors.move_to_end(visitor)
        return state

    def photo_event(self, handler: str, image: Any, *detail: Hashable) -> bool:
        """A photo event reaches ``handler``: the page's photo is now ``image``. True when it is new to this handler
        (not the same photo, with the same ``detail``, as the photo event it handled last: the browser's repeat)."""
        visitor = self._visitor()
        if visitor is None:
            return True
        event = (photo_key(image), *detail)
        with self._lock:
            state = self._get(visitor)
            state.photo = photo_key(image)
            new = state.handled.get(handler) != event
            state.handled[handler] = event
            return new

    def begin(self, image: Any, starts: tuple[str, ...] = ()) -> Ticket:
        """An answer for ``image`` begins; it is a new choice of each topic in ``starts``."""
        visitor = self._visitor()
        if visitor is None:
            return Ticket(None, photo_key(image), {})
        with self._lock:
            state = self._get(visitor)
            for topic in starts:
                state.marks[topic] = state.marks.get(topic, 0) + 1
            return Ticket(visitor, photo_key(image), dict(state.marks))

    def fresh(self, ticket: Ticket, topic: str | None = None) -> bool:
        """Whether the answer of ``ticket`` is still wanted: its photo is the page's photo and (for an update of
        ``topic``) no choice of that topic was begun after it."""
        if ticket.visitor is None:
            return True
        with self._lock:
            state = self._visitors.get(ticket.visitor)
            if state is None:
                return True  # forgotten: nothing newer is known
            if state.photo is not _UNKNOWN and state.photo != ticket.photo:
                return False
            return topic is None or state.marks.get(topic, 0) == ticket.marks.get(topic, 0)

    def only_fresh(self, fn: Callable, idle: Any, topics: Mapping[Any, str] | None = None,
                   starts: tuple[str, ...] = (), said: Any = None) -> Callable:
        """A page handler ``fn(image, ...)`` (a generator of update dicts, or a function returning one) whose updates
        reach the page only while fresh (:meth:`fresh`; ``topics``: the topic of each output that has one, the others
        go stale with the photo only). It begins a choice of each topic in ``starts``. A generator whose photo went
        stale, or whose every choice in ``starts`` was followed by a newer one, is closed; a job's ``should_stop``
        also stops it then, and its answer is ``{said: STOPPED}`` (or nothing). ``idle``: an output of the event,
        sent as ``gr.skip()`` when every update was dropped (an empty dict reads as a missing value)."""
        topics = dict(topics or {})

        def kept(ticket: Ticket, update: Any) -> dict:
            if not isinstance(update, dict):
                return update
            out = {c: v for c, v in update.items() if self.fresh(ticket, topics.get(c))}
            return out or {idle: gr.skip()}

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream(image: Any, *args: Any, **kwargs: Any):
                ticket = self.begin(image, starts)
                if not self.fresh(ticket):
                    yield {idle: gr.skip()}
                    return
                updates = fn(image, *args, **kwargs)
                try:
                    for update in updates:
                        yield kept(ticket, update)
                        if not self.fresh(ticket) or (starts and not any(self.fresh(ticket, t) for t in starts)):
                            return  # a new photo, or a newer choice of the same kind: the rest is not wanted
                finally:
                    updates.close()

            return stream

        @functools.wraps(fn)
        def call(image: Any, *args: Any, **kwargs: Any) -> Any:
            ticket = self.begin(image, starts)
            stopped = {said: STOPPED} if said is not None else {idle: gr.skip()}
            if not self.fresh(ticket):
                return stopped
            stop = kwargs.get("should_stop")
            if stop is not None:
                kwargs["should_stop"] = lambda: stop() or not self.fresh(ticket)
            try:
                out = fn(image, *args, **kwargs)
            except JobCancelledError:
                if not self.fresh(ticket):
                    return stopped
                raise
            return kept(ticket, out) if self.fresh(ticket) else stopped

        return call
