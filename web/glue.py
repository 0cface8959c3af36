"""Every use of Gradio's internals by the page (the ``web`` package), in one place. Written against **gradio 6.31.0**.

The page needs a few things Gradio has no public API for: which event a handler runs for and whether its client is
still there (to stop abandoned work), the request of the running event (outside a handler's parameters), a
component whose preprocessing is our own check, a polite "busy" answer when the queue is full, a sentence instead
of a traceback for a request naming a file that was not uploaded, the defaults for inputs an older raw-HTTP client
does not send, and deleting the uploads Gradio cached for the page. Each is one function here;
``tests/test_app_glue.py`` checks that every internal these functions rely on still exists and behaves as assumed, so
a Gradio upgrade fails that one test with a message naming the internal, instead of breaking the page quietly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import gradio as gr
from gradio.context import LocalContext

GRADIO_VERSION = "6.31.0"  # the version this module was written and tested against


# --------------------------------------------------------------------------------------------------- events


def current_event() -> tuple[Any, str | None]:
    """The Blocks and the event id of the event the calling handler runs for (``(None, None)`` outside one)."""
    return LocalContext.blocks.get(None), LocalContext.event_id.get(None)


def current_request() -> Any:
    """The ``gr.Request`` of the running event (None outside one); its ``session_hash`` names the visitor."""
    return LocalContext.request.get(None)


@contextlib.contextmanager
def request_context(request: Any) -> Iterator[None]:
    """Run the body as if ``request`` were the running event's request (for tests and direct calls)."""
    token = LocalContext.request.set(request)
    try:
        yield
    finally:
        LocalContext.request.reset(token)


def client_address(request: Any, behind_proxy: bool = False) -> str | None:
    """Where a request comes from: the connection's peer or, ``behind_proxy``, the address the nearest proxy saw
    (the last entry of ``X-Forwarded-For``, which the proxy adds; the entries before it are the client's own word).
    ``None`` when it is not known. Works on a ``gr.Request`` and on Starlette's request alike."""
    headers = getattr(request, "headers", None) or {}
    try:
        forwarded = headers.get("x-forwarded-for") if behind_proxy else None
    except Exception:  # noqa: BLE001 - an odd headers object: no forwarding to read
        forwarded = None
    if forwarded:
        last = forwarded.split(",")[-1].strip()
        if last:
            return last
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or None


def event_alive(blocks: Any, event_id: str | None) -> bool:
    """Whether Gradio still runs this event for a connected client (False once it is cancelled or its page is
    closed). Gradio keeps running events in ``blocks._queue.active_jobs`` (a list of ``None`` or lists of
    ``Event``); a closed page marks its events not ``alive``. True when there is no queue or no event to look at."""
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return True
    for job in list(queue.active_jobs):
        for event in job or ():
            if event._id == event_id:
                return bool(event.alive)
    return False


# --------------------------------------------------------------------------------------------------- components


def own_preprocess(component: gr.components.Component, preprocess: Callable[[Any], Any]) -> Any:
    """``component`` with its preprocessing replaced by ``preprocess`` (called with the uploaded ``FileData``).
    Gradio calls ``block.preprocess(value)`` on the instance, so an instance attribute wins (a subclass would make
    Gradio write stub files next to the module that defines it)."""
    component.preprocess = preprocess
    return component


# --------------------------------------------------------------------------------------------------- the server


def limit_queue(demo: gr.Blocks, max_size: int, busy_message: str,
                admit: Callable[[tuple[str, Any], list[tuple[str, Any]]], str | None] | None = None) -> gr.Blocks:
    """Queue at most ``max_size`` events; a client over that gets ``busy_message`` (Gradio's own text names internal
    sizes). ``admit((kind, request), waiting)``, when given, sees each new event's concurrency group and request
    beside those of every event waiting now, and may refuse it with a message. Wraps
    ``demo._queue.push``, whose result is ``(ok, message, kind)`` with kind ``"queue_full"``; waiting events are
    ``Event`` objects (``concurrency_id``, ``request``) in ``event_queue_per_concurrency_id[...].queue``."""
    demo.queue(default_concurrency_limit=1, max_size=max_size)
    queue = demo._queue
    push = queue.push

    async def polite_push(body: Any, request: Any, *args: Any, **kwargs: Any):
        if admit is not None:
            refusal = admit(_new_event(demo, body, request), _waiting_events(queue))
            if refusal:
                return False, refusal, "queue_full"
        ok, message, kind = await push(body, request, *args, **kwargs)
        return (ok, busy_message, kind) if kind == "queue_full" else (ok, message, kind)

    queue.push = polite_push
    return demo


def _new_event(demo: gr.Blocks, body: Any, request: Any) -> tuple[str, Any]:
    """``(concurrency group, request)`` of an event about to be queued (its group ``""`` when unknown)."""
    from gradio import route_utils

    try:
        kind = route_utils.get_fn(demo, None, body).concurrency_id or ""
    except Exception:  # noqa: BLE001 - Gradio answers a bad function index itself
        kind = ""
    return kind, request


def _waiting_events(queue: Any) -> list[tuple[str, Any]]:
    """``(concurrency group, request)`` of every event waiting in ``queue`` now."""
    return [(event.concurrency_id or "", event.request)
            for events in list(queue.event_queue_per_concurrency_id.values()) for event in list(events.queue)]


def on_file_outside_uploads(demo: gr.Blocks, refuse: Callable[[Exception], BaseException]) -> gr.Blocks:
    """Every file a request names must be a file this server received as an upload. Gradio's
    ``Blocks.preprocess_data`` refuses a path outside the upload folder with an ``InvalidPathError`` and a reference
    without Gradio's ``meta`` marker (``{"path": "/etc/passwd"}``) with pydantic's ``ValidationError`` (both give the
    client an empty error and the log a traceback); it *fetches* a URL given as a path, fails on a NUL byte with a
    ``ValueError``, and records a folder of the uploads (the upload folder itself) as one of its files, which its
    clean-up then cannot remove. This checks every ``{"path": ...}`` of the request first (a plain file inside the
    upload folder, no URL, no NUL) and raises ``refuse(exc)`` for anything else, and for Gradio's own refusals."""
    from gradio.exceptions import InvalidPathError
    from gradio.utils import get_upload_folder
    from pydantic import ValidationError

    preprocess: Callable[..., Awaitable[Any]] = demo.preprocess_data

    async def checked(block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        for path in _file_paths(inputs):
            problem = _not_an_upload(path, get_upload_folder())
            if problem:
                raise refuse(InvalidPathError(f"{problem}: {path[:200]!r}"))
        try:
            return await preprocess(block_fn, inputs, *args, **kwargs)
        except (InvalidPathError, ValidationError) as exc:
            raise refuse(exc) from None

    demo.preprocess_data = checked
    return demo


def _file_paths(value: Any) -> Iterator[str]:
    """Every ``path`` of a file reference (a dict with a ``path``) anywhere in a request's inputs."""
    if isinstance(value, dict):
        if "path" in value:
            yield value["path"] if isinstance(value["path"], str) else repr(value["path"])
        for v in value.values():
            if isinstance(v, (dict, list)):
                yield from _file_paths(v)
    elif isinstance(value, list):
        for v in value:
            yield from _file_paths(v)


def _not_an_upload(path: str, upload_folder: str) -> str:
    """Why ``path`` is not a file this server received ('' when it is)."""
    import os

    if "\x00" in path:
        return "a NUL byte in a file path"
    if "://" in path:
        return "a URL where an uploaded file is expected"
    try:
        real, folder = os.path.realpath(path), os.path.realpath(upload_folder)
        inside = os.path.commonpath([real, folder]) == folder and real != folder
    except (ValueError, OSError):
        return "a path that cannot be read"
    if not inside:
        return "a path outside the uploads"
    if not os.path.isfile(real):
        return "not a file" if os.path.exists(real) else "no such upload"
    return ""


def default_missing_inputs(demo: gr.Blocks, api_names: tuple[str, ...]) -> gr.Blocks:
    """A request to one of ``api_names`` that sends fewer inputs than the endpoint has gets the missing trailing
    ones' component values (as ``gradio_client`` sends them) instead of Gradio's "didn't receive enough input
    values". Wraps ``Blocks.validate_inputs(block_fn, inputs)``, which runs before preprocessing and may extend
    ``inputs`` in place."""
    validate = demo.validate_inputs

    def padded(block_fn: Any, inputs: list[Any]) -> Any:
        wanted = block_fn.inputs
        if getattr(block_fn, "api_name", None) in api_names and len(inputs) < len(wanted):
            inputs.extend(getattr(block, "value", None) for block in wanted[len(inputs):])
        return validate(block_fn, inputs)

    demo.validate_inputs = padded
    return demo


def delete_cached_files(demo: gr.Blocks) -> None:
    """Delete every file Gradio cached for this page (uploads, results it copied), whatever its age. Entries that are
    not plain files are dropped from Gradio's record first: its deletion (``os.remove``) would stop at a folder."""
    import os

    from gradio.route_utils import delete_files_created_by_app

    for files in demo.temp_file_sets:
        files -= {f for f in files if os.path.lexists(f) and not os.path.isfile(f)}
    delete_files_created_by_app(demo, age=None)
