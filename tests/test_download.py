"""Fetching the checkpoint (sam/network/checkpoint.py): gdown against a fake Google Drive on 127.0.0.1 (confirmation
page, quota page, wrong file, a connection cut mid-way), and the Hugging Face mirror through a stand-in for
``hf_hub_download``. No traffic leaves 127.0.0.1: the fake Drive's requests adapter refuses every other host."""

from __future__ import annotations

import http.server
import importlib
import os
import threading
import urllib.parse
from pathlib import Path

import pytest
import requests

from sam.network import checkpoint
from sam.network.checkpoint import CheckpointError, CheckpointNotFoundError
from sam.network.model import SAM
from sam.pipeline import AgingPipeline
from tests.conftest import TINY, randomize_

REAL_CHECKOUT_DIR = checkpoint.checkout_weights_dir  # before the autouse fixture hides it
DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com")
QUOTA_PAGE = (
    "<html><head><title>Google Drive - Quota exceeded</title></head><body><div class='uc-main'>"
    '<p class="uc-error-caption">Sorry, you can\'t view or download this file at this time.</p>'
    '<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try '
    "accessing the file again later.</p></div></body></html>"
)


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    randomize_(SAM(TINY)).save(path)
    return path.read_bytes()


class FakeDrive(http.server.BaseHTTPRequestHandler):
    """Drive's flow: ``/uc?id=`` answers the "can't scan for viruses" form (or the quota page); the form's target
    sends the file, honouring ``Range``. ``cut_after`` bytes into a full response, the connection is dropped
    (``cuts`` times); ``refuse_ranges`` makes every later request fail, as when the network stays down."""

    payload: bytes = b""
    content_type = "application/octet-stream"
    quota = False
    cut_after: int | None = None
    cuts = 0
    refuse_ranges = False
    log: list[tuple[str, str | None]]

    def do_GET(self):  # noqa: N802 - http.server API
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        cls = type(self)
        cls.log.append((url.path, self.headers.get("Range")))
        if url.path == "/uc":
            page = QUOTA_PAGE if cls.quota else (
                "<html><head><title>Google Drive - Virus scan warning</title></head><body>"
                '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
                f'<input type="hidden" name="id" value="{query["id"][0]}">'
                '<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">'
                '<input type="hidden" name="uuid" value="abc-123"></form></body></html>')
            self._send(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})
        elif url.path == "/download" and query.get("confirm") == ["t"] and query.get("uuid") == ["abc-123"]:
            self._send_file()
        else:
            self.send_error(404)

    def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _send_file(self) -> None:
        cls, data = type(self), type(self).payload
        headers = {"Content-Type": cls.content_type, "ETag": '"v1"',
                   "Content-Disposition": f'attachment; filename="{checkpoint.CHECKPOINT_NAME}"'}
        ranged = self.headers.get("Range")
        if ranged:
            if cls.refuse_ranges:
                self.send_error(503)
                return
            start = int(ranged.split("=")[1].split("-")[0])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(206, data[start:], headers)
            return
        if cls.cut_after is not None and cls.cuts > 0:
            cls.cuts -= 1
            self.send_response(200)
            for k, v in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data[: cls.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        self._send(200, data, headers)

    def log_message(self, *args):
        pass


class _LoopbackAdapter(requests.adapters.HTTPAdapter):
    """Sends Drive's hosts to the fake server over plain HTTP on 127.0.0.1; any other host is an error."""

    def __init__(self, port: int):
        super().__init__()
        self.port = port

    def send(self, request, **kwargs):
        url = urllib.parse.urlsplit(request.url)
        if url.hostname not in DRIVE_HOSTS:
            raise requests.exceptions.ConnectionError(f"test: no traffic to {url.hostname}")
        request.url = urllib.parse.urlunsplit(("http", f"127.0.0.1:{self.port}", url.path, url.query, ""))
        return super().send(request, **kwargs)


@pytest.fixture
def drive(monkeypatch):
    """The fake Drive; ``drive.payload`` is the file it serves. Downloads are on, the Hub is unreachable."""
    handler = type("Drive", (FakeDrive,), {"log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    gdown_download = importlib.import_module("gdown.download")
    real_session = gdown_download._get_session

    def session(**kwargs):
        sess, cookies = real_session(**kwargs)
        adapter = _LoopbackAdapter(server.server_address[1])
        sess.mount("https://", adapter)
        sess.mount("http://", adapter)
        return sess, cookies

    monkeypatch.setattr(gdown_download, "_get_session", session)
    monkeypatch.setattr(checkpoint, "DRIVE_RETRIES", 2)
    monkeypatch.setattr(checkpoint, "PUBLISHED_BYTES", 1 << 20)  # the disk-space check, sized for the fake file
    monkeypatch.delenv("SAM_NO_DOWNLOAD")
    _fake_hub(monkeypatch, None)
    yield handler
    server.shutdown()
    server.server_close()


def _fake_hub(monkeypatch, payload: bytes | None, calls: list | None = None, cache: Path | None = None):
    """``hf_hub_download`` as the Hub does it: a blob in the cache and a snapshot link to it (or unreachable)."""
    import huggingface_hub

    def download(repo_id, filename, *, revision=None, **kwargs):
        if calls is not None:
            calls.append((repo_id, filename))
        if payload is None or cache is None:
            raise ConnectionError("could not reach huggingface.co")
        blob = cache / "blobs" / "0123abcd"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(payload)
        link = cache / "snapshots" / "main" / filename
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(blob)
        return str(link)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() or p.is_symlink()) if folder.exists() else []


# ------------------------------------------------------------------------------------------------- Google Drive


def test_drive_download_through_the_confirmation_page(tmp_path, drive, published_like_bytes):
    drive.payload = published_like_bytes
    target = tmp_path / "w" / checkpoint.CHECKPOINT_NAME
    assert checkpoint.ensure(target, quiet=True) == target
    assert target.read_bytes() == published_like_bytes
    assert [p for p, _ in drive.log] == ["/uc", "/download"]
    assert _left(target.parent) == [target.name]  # no .part, no .download left


def test_wrong_file_is_refused_and_leaves_nothing(tmp_path, drive, tiny_bytes):
    drive.payload = tiny_bytes  # a valid, self-consistent tiny checkpoint: not the published model
    target = tmp_path / checkpoint.CHECKPOINT_NAME
    with pytest.raises(CheckpointError) as info:
        checkpoint.ensure(target, quiet=True)
    msg = str(info.value)
    assert "not the published SAM" in msg and "deleted" in msg and "output_size" in msg and "\n" not in msg
    assert _left(tmp_path) == []


def test_quota_page_is_explained_and_leaves_nothing(tmp_path, drive):
    drive.quota = True
    target = tmp_path / checkpoint.CHECKPOINT_NAME
    with pytest.raises(CheckpointNotFoundError) as info:
        checkpoint.ensure(target, quiet=True)
    msg = str(info.value)
    assert "too many people downloaded this file recently" in msg and "Try again in a few hours" in msg
    assert "SAM_CHECKPOINT" in msg and str(target) in msg and "\n" not in msg
    assert _left(tmp_path) == []


def test_html_page_served_as_the_file_is_refused(tmp_path, drive):
    drive.payload = QUOTA_PAGE.encode()
    drive.content_type = "text/html"
    target = tmp_path / checkpoint.CHECKPOINT_NAME
    with pytest.raises(CheckpointNotFoundError, match="too many people downloaded"):
        checkpoint.ensure(target, quiet=True)
    assert _left(tmp_path) == []


def test_connection_cut_mid_way_resumes(tmp_path, drive, published_like_bytes):
    drive.payload = published_like_bytes
    drive.cut_after, drive.cuts = len(published_like_bytes) * 2 // 3, 1
    target = tmp_path / checkpoint.CHECKPOINT_NAME
    assert checkpoint.ensure(target, quiet=True) == target
    assert target.read_bytes() == published_like_bytes
    ranges = [r for p, r in drive.log if p == "/download" and r]
    assert len(ranges) == 1 and int(ranges[0][6:-1]) > 0  # the second request picked up where the first stopped
    assert _left(tmp_path) == [target.name]


def test_download_cut_in_one_run_resumes_in_the_next(tmp_path, drive, published_like_bytes, monkeypatch):
    monkeypatch.setattr(checkpoint, "DRIVE_RETRIES", 0)  # as after Ctrl-C: this run gives up
    drive.payload = published_like_bytes
    cut = len(published_like_bytes) // 2
    drive.cut_after, drive.cuts = cut, 1
    target = tmp_path / checkpoint.CHECKPOINT_NAME
    with pytest.raises(CheckpointNotFoundError) as info:
        checkpoint.ensure(target, quiet=True)
    (part,) = tmp_path.iterdir()  # only the partial file, to resume
    kept = part.stat().st_size
    assert part.name.endswith(".part") and 0 < kept <= cut
    with pytest.raises(CheckpointNotFoundError, match="an unfinished download, .*: the next download resumes it"):
        checkpoint.ensure(target, download=False)
    assert "is kept and the next run resumes it" in str(info.value) and "\n" not in str(info.value)
    assert checkpoint.ensure(target, quiet=True) == target  # the next run
    assert drive.log[-1] == ("/download", f"bytes={kept}-")
    assert target.read_bytes() == published_like_bytes
    assert _left(tmp_path) == [target.name]


def test_from_pretrained_downloads_then_loads(tmp_path, drive, published_like_bytes, monkeypatch):
    drive.payload = published_like_bytes
    monkeypatch.setenv("SAM_CACHE_DIR", str(tmp_path / "cache"))
    pipe = AgingPipeline.from_pretrained(device="cpu")
    assert pipe.checkpoint_path == tmp_path / "cache" / checkpoint.CHECKPOINT_NAME
    assert pipe.output_size == 1024


def test_no_download_when_turned_off(tmp_path, drive, monkeypatch):
    target = tmp_path / checkpoint.CHECKPOINT_NAME
    with pytest.raises(CheckpointNotFoundError, match="python -m sam weights"):
        AgingPipeline.from_pretrained(target, download=False)
    monkeypatch.setenv("SAM_NO_DOWNLOAD", "1")
    with pytest.raises(CheckpointNotFoundError):
        checkpoint.ensure(target)
    assert drive.log == [] and _left(tmp_path) == []


def test_read_only_or_broken_weights_folder(tmp_path, drive, monkeypatch):
    broken = tmp_path / "weights"
    broken.symlink_to(tmp_path / "volume-not-mounted")
    with pytest.raises(CheckpointNotFoundError, match="is a link to .*volume-not-mounted, which does not exist"):
        checkpoint.ensure(broken / checkpoint.CHECKPOINT_NAME, quiet=True)
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(checkpoint.os, "access", lambda *a, **k: False)  # tests may run as root
    with pytest.raises(CheckpointNotFoundError, match="is read-only. Mount it writable, or set SAM_CHECKPOINT"):
        checkpoint.ensure(ro / checkpoint.CHECKPOINT_NAME, quiet=True)
    assert drive.log == []


def test_not_enough_disk_space(tmp_path, drive, monkeypatch):
    monkeypatch.setattr(checkpoint, "PUBLISHED_BYTES", 2_270_547_237)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: type("U", (), {"free": 10**9})())
    with pytest.raises(CheckpointNotFoundError, match="1.0 GB free"):
        checkpoint.ensure(tmp_path / checkpoint.CHECKPOINT_NAME, quiet=True)
    assert drive.log == []


# ------------------------------------------------------------------------------------------------- Hugging Face


def test_hub_mirror_is_used_and_checked(tmp_path, drive, published_like_bytes, monkeypatch):
    monkeypatch.setenv("SAM_HF_REPO", "someone/sam-mirror")
    calls: list = []
    _fake_hub(monkeypatch, published_like_bytes, calls, tmp_path / "hub")
    got = checkpoint.ensure(tmp_path / "w" / checkpoint.CHECKPOINT_NAME, quiet=True)
    assert calls == [("someone/sam-mirror", checkpoint.CHECKPOINT_NAME)]
    assert got == tmp_path / "hub" / "snapshots" / "main" / checkpoint.CHECKPOINT_NAME  # used in the Hub cache
    assert drive.log == []


def test_bad_hub_file_is_deleted_and_drive_is_tried(tmp_path, drive, tiny_bytes, published_like_bytes, monkeypatch):
    monkeypatch.setenv("SAM_HF_REPO", "someone/sam-mirror")
    _fake_hub(monkeypatch, tiny_bytes, cache=tmp_path / "hub")
    drive.payload = published_like_bytes
    target = tmp_path / "w" / checkpoint.CHECKPOINT_NAME
    assert checkpoint.ensure(target, quiet=True) == target
    assert _left(tmp_path / "hub") == []  # the bad blob and its link are gone


def test_every_source_failing_names_each(tmp_path, drive, monkeypatch):
    monkeypatch.setenv("SAM_HF_REPO", "someone/sam-mirror")
    drive.quota = True
    with pytest.raises(CheckpointNotFoundError) as info:
        checkpoint.ensure(tmp_path / checkpoint.CHECKPOINT_NAME, quiet=True)
    msg = str(info.value)
    assert "Hugging Face Hub (someone/sam-mirror): ConnectionError" in msg and "Google Drive" in msg
    assert "someone/sam-mirror" in msg.split("downloading it failed")[1]  # the how-to names the mirror too


def test_no_hub_repository_is_assumed(tmp_path, drive, published_like_bytes, monkeypatch):
    calls: list = []
    _fake_hub(monkeypatch, published_like_bytes, calls, tmp_path / "hub")
    drive.payload = published_like_bytes
    assert checkpoint.ensure(tmp_path / checkpoint.CHECKPOINT_NAME, quiet=True).exists()
    assert calls == []  # only the authors' link was used


# ------------------------------------------------------------------------------------------------------- where


def test_where_the_checkpoint_is_looked_for(tmp_path, monkeypatch):
    name = checkpoint.CHECKPOINT_NAME
    assert checkpoint.locate() == Path(os.environ["SAM_CACHE_DIR"]) / name  # no checkout folder: the user cache
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(checkpoint, "checkout_weights_dir", lambda: weights)
    assert checkpoint.locate() == weights / name  # a checkout: downloads go to weights/
    monkeypatch.setenv("SAM_HF_REPO", "someone/mirror")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, f, **k: str(tmp_path / "hub.pt"))
    assert checkpoint.locate() == tmp_path / "hub.pt"  # preloaded Hub copy (a Space's preload_from_hub)
    (weights / name).write_bytes(b"x")
    assert checkpoint.locate() == weights / name  # a file in weights/ wins over the Hub cache
    monkeypatch.setenv("SAM_CHECKPOINT", str(tmp_path))
    assert checkpoint.locate() == tmp_path / name  # a folder means the file in it
    assert checkpoint.locate(tmp_path / "x.pt") == tmp_path / "x.pt"  # the argument first


def test_installed_package_has_no_checkout_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoint, "checkout_weights_dir", REAL_CHECKOUT_DIR)
    assert REAL_CHECKOUT_DIR() == Path(checkpoint.__file__).parents[2] / "weights"  # this checkout
    fake_pkg = tmp_path / "site-packages" / "sam"
    fake_pkg.mkdir(parents=True)
    monkeypatch.setattr(checkpoint, "PACKAGE_ROOT", fake_pkg)
    assert checkpoint.checkout_weights_dir() is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SAM_CACHE_DIR", raising=False)
    assert checkpoint.locate() == tmp_path / "xdg" / "sam-age" / checkpoint.CHECKPOINT_NAME
