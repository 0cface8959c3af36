"""The Gradio internals ``web/glue.py`` relies on, each pinned by name: after a Gradio upgrade, this file says which
internal moved or changed (the page and its other tests would only show the symptom). Servers listen on 127.0.0.1
only."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import types
from pathlib import Path

import gradio as gr
import pytest

from web import glue as gradio_glue

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ASTRONAUT = str(Path(__file__).resolve().parents[1] / "assets" / "astronaut.png")
WRITTEN_FOR = f"(web/glue.py was written against gradio {gradio_glue.GRADIO_VERSION}; this is {gr.__version__})"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_local_context_holds_blocks_event_id_and_request():
    from gradio.context import LocalContext

    for name in ("blocks", "event_id", "request"):
        assert hasattr(LocalContext, name) and hasattr(getattr(LocalContext, name), "get"), \
            f"gradio.context.LocalContext.{name} (a ContextVar) is gone {WRITTEN_FOR}"
    assert gradio_glue.current_event() == (None, None) and gradio_glue.current_request() is None  # outside events
    with gradio_glue.request_context(types.SimpleNamespace(session_hash="abc")):
        assert gradio_glue.current_request().session_hash == "abc"
    assert gradio_glue.current_request() is None


def test_queue_events_have_id_and_alive():
    from gradio.queueing import Event, Queue

    source = inspect.getsource(Event.__init__)
    assert "self._id =" in source and "self.alive =" in source, \
        f"gradio.queueing.Event no longer sets _id / alive {WRITTEN_FOR}"
    assert "self.active_jobs" in inspect.getsource(Queue.__init__), \
        f"gradio.queueing.Queue.active_jobs is gone {WRITTEN_FOR}"
    dead = types.SimpleNamespace(_id="x", alive=False)
    blocks = types.SimpleNamespace(_queue=types.SimpleNamespace(active_jobs=[None, [dead]]))
    assert gradio_glue.event_alive(blocks, "x") is False and gradio_glue.event_alive(blocks, "other") is False
    dead.alive = True
    assert gradio_glue.event_alive(blocks, "x") is True
    assert gradio_glue.event_alive(types.SimpleNamespace(), "x") is True  # no queue: nothing to look at


def test_in_a_running_event_the_glue_sees_it_and_our_preprocess_runs(tmp_path):
    """Live: a handler sees its Blocks, event id and request; its event is alive in the queue's active jobs; the
    instance's replaced ``preprocess`` is what Gradio calls on an upload."""
    from gradio_client import Client, handle_file

    seen = {}

    def handler(value):
        blocks, event_id = gradio_glue.current_event()
        seen.update(blocks=blocks, event_id=event_id, alive=gradio_glue.event_alive(blocks, event_id),
                    session=getattr(gradio_glue.current_request(), "session_hash", None), value=value)
        return "ok"

    with gr.Blocks() as demo:
        box = gradio_glue.own_preprocess(gr.Image(type="filepath"),
                                         lambda payload: f"checked:{Path(payload.path).name}")
        out = gr.Textbox()
        box.change(handler, box, out, api_name="look")
    gradio_glue.limit_queue(demo, 4, "busy")
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    try:
        assert Client(demo.local_url, verbose=False).predict(handle_file(ASTRONAUT), api_name="/look") == "ok"
    finally:
        demo.close()
    assert seen["blocks"] is demo and seen["event_id"], f"LocalContext.blocks / event_id not set {WRITTEN_FOR}"
    assert seen["alive"] is True, f"the running event is not in blocks._queue.active_jobs {WRITTEN_FOR}"
    assert seen["session"], f"LocalContext.request has no session_hash {WRITTEN_FOR}"
    assert seen["value"] == "checked:astronaut.png", f"Gradio no longer calls the instance's preprocess {WRITTEN_FOR}"


def test_queue_push_answers_queue_full_and_is_wrapped(monkeypatch):
    from gradio.queueing import Queue

    assert inspect.iscoroutinefunction(Queue.push), f"gradio.queueing.Queue.push is not async {WRITTEN_FOR}"
    assert '"queue_full"' in inspect.getsource(Queue.push), \
        f"Queue.push no longer answers the kind \"queue_full\" {WRITTEN_FOR}"
    with gr.Blocks() as demo:
        gr.Button().click(lambda: None)
    gradio_glue.limit_queue(demo, 3, "busy, try again")
    assert demo._queue.max_size == 3 and demo._queue.push.__name__ == "polite_push", \
        f"Blocks._queue is not the queue of Blocks.queue() {WRITTEN_FOR}"

    async def full(self, body, request, username):
        return False, "Queue is full. Max size is 3", "queue_full"

    monkeypatch.setattr(Queue, "push", full)
    gradio_glue.limit_queue(demo, 3, "busy, try again")
    assert asyncio.run(demo._queue.push(None, None, None)) == (False, "busy, try again", "queue_full")


def test_files_outside_the_uploads_raise_invalid_path_in_preprocess_data():
    from gradio.context import LocalContext
    from gradio.exceptions import InvalidPathError
    from pydantic import ValidationError

    with gr.Blocks() as demo:
        f = gr.File(type="filepath")
        f.change(lambda x: x, f, gr.Textbox(), api_name="f")
    block_fn = next(d for d in demo.fns.values() if d.api_name == "f")
    outside = [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}]
    assert inspect.iscoroutinefunction(demo.preprocess_data)
    demo.has_launched = True  # as in a served event: Gradio checks paths only for a launched page's event
    token = LocalContext.blocks.set(demo)
    try:
        with pytest.raises(InvalidPathError):  # Gradio's own refusal, which the glue turns into words
            asyncio.run(demo.preprocess_data(block_fn, list(outside), None))
        with pytest.raises(ValidationError):  # no meta marker: the data model refuses
            asyncio.run(demo.preprocess_data(block_fn, [{"path": "/etc/passwd"}], None))
        gradio_glue.on_file_outside_uploads(demo, lambda exc: gr.Error(f"refused: {type(exc).__name__}: {exc}"))
        with pytest.raises(gr.Error, match="refused: InvalidPathError"):
            asyncio.run(demo.preprocess_data(block_fn, list(outside), None))
        with pytest.raises(gr.Error, match="outside the uploads"):
            asyncio.run(demo.preprocess_data(block_fn, [{"path": "/etc/passwd"}], None))
    finally:
        LocalContext.blocks.reset(token)


@pytest.mark.parametrize(("path", "words"), [("https://example.com/a.png", "a URL"), ("UPLOAD\x00.png", "NUL"),
                                             ("FOLDER", "not a file"), ("ROOT", "outside the uploads"),
                                             ("UPLOAD", ""), ("GONE", "no such upload")])
def test_what_counts_as_an_upload(tmp_path, path, words):
    """Only a plain file inside the upload folder: no URL (Gradio would fetch it), no NUL byte, no folder (Gradio's
    clean-up stops at one), not the folder itself."""
    root = tmp_path / "uploads"
    (root / "abc").mkdir(parents=True)
    (root / "abc" / "a.png").write_bytes(b"x")
    path = {"UPLOAD": str(root / "abc" / "a.png"), "FOLDER": str(root / "abc"), "ROOT": str(root),
            "GONE": str(root / "abc" / "b.png")}.get(path, path).replace("UPLOAD", str(root / "abc" / "a.png"))
    assert words in gradio_glue._not_an_upload(path, str(root)) and bool(words) == bool(
        gradio_glue._not_an_upload(path, str(root)))


def test_the_client_address_is_the_peer_unless_behind_a_proxy():
    request = types.SimpleNamespace(headers={"x-forwarded-for": "6.6.6.6, 10.1.2.3"},
                                    client=types.SimpleNamespace(host="127.0.0.1"))
    assert gradio_glue.client_address(request) == "127.0.0.1"  # the header is the client's own word
    assert gradio_glue.client_address(request, behind_proxy=True) == "10.1.2.3"  # what the nearest proxy saw
    assert gradio_glue.client_address(types.SimpleNamespace(headers={}, client=None)) is None


def test_validate_inputs_can_be_padded():
    from gradio.blocks import Blocks

    assert "self.validate_inputs(block_fn, inputs)" in inspect.getsource(Blocks.preprocess_data), \
        f"Blocks.preprocess_data no longer calls validate_inputs(block_fn, inputs) first {WRITTEN_FOR}"
    with gr.Blocks() as demo:
        a, b = gr.Number(1), gr.Textbox("best")
        gr.Button().click(lambda x, y: None, [a, b], None, api_name="grown")
        gr.Button().click(lambda x, y: None, [a, b], None, api_name="other")
    grown, other = (next(d for d in demo.fns.values() if d.api_name == n) for n in ("grown", "other"))
    with pytest.raises(ValueError):
        demo.validate_inputs(grown, [5])  # too few: Gradio refuses
    gradio_glue.default_missing_inputs(demo, ("grown",))
    inputs = [5]
    demo.validate_inputs(grown, inputs)
    assert inputs == [5, "best"]  # the missing trailing input: its component's value
    with pytest.raises(ValueError):
        demo.validate_inputs(other, [5])  # only the named endpoints


def test_delete_cached_files(tmp_path):
    with gr.Blocks() as demo:
        gr.Markdown("x")
    cached = tmp_path / "upload.png"
    cached.write_bytes(b"x")
    assert isinstance(demo.temp_file_sets, list), f"Blocks.temp_file_sets is gone {WRITTEN_FOR}"
    demo.temp_file_sets.append({str(cached)})
    gradio_glue.delete_cached_files(demo)
    assert not cached.exists(), f"gradio.route_utils.delete_files_created_by_app kept a cached file {WRITTEN_FOR}"
