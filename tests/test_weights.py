"""Checkpoint download and validation (sam/weights.py), with fake sources only: no traffic leaves 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from pathlib import Path

import pytest

from sam import weights
from sam.model import SAM, CheckpointError
from tests.conftest import TINY, randomize_


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    randomize_(SAM(TINY)).save(path)
    return path.read_bytes()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.delenv("SAM_CHECKPOINT", raising=False)
    monkeypatch.delenv("SAM_NO_DOWNLOAD", raising=False)
    monkeypatch.delenv("SAM_HF_REPO", raising=False)
    monkeypatch.setattr(weights, "DRIVE_URL", "http://127.0.0.1:9/uc")  # discard port: refused at once
    monkeypatch.setattr(weights, "TIMEOUT_S", 5.0)
    _fake_hf(monkeypatch, None)  # never reach the real hub from a test


class _DriveHandler(http.server.BaseHTTPRequestHandler):
    """Google Drive's flow: /uc answers a "can't scan for viruses" form; the form's target sends the file."""

    payload: bytes = b""
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).requests.append(self.path)
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/uc":
            page = (
                "<html><head><title>Google Drive - Virus scan warning</title></head><body>"
                '<form id="download-form" action="/download" method="get">'
                '<input type="hidden" name="id" value="{}"><input type="hidden" name="export" value="download">'
                '<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="abc-123">'
                "</form></body></html>".format(query["id"][0])
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
        elif url.path == "/download" and query.get("confirm") == ["t"] and query.get("uuid") == ["abc-123"]:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            self.wfile.write(self.payload)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def drive(monkeypatch):
    """A fake Drive on 127.0.0.1; set ``drive.payload`` to what the file download returns."""
    handler = type("Handler", (_DriveHandler,), {"payload": b"", "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(weights, "DRIVE_URL", f"http://127.0.0.1:{server.server_address[1]}/uc")
    yield handler
    server.shutdown()
    server.server_close()


def _fake_hf(monkeypatch, payload: bytes | None, calls: list | None = None):
    import huggingface_hub

    def fake(repo_id, filename, *, local_dir=None, **kwargs):
        if calls is not None:
            calls.append((repo_id, filename))
        if payload is None:
            raise ConnectionError("could not reach huggingface.co")
        out = Path(local_dir) / filename
        out.write_bytes(payload)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_existing_checkpoint_is_validated_and_returned(tmp_path, tiny_bytes, monkeypatch):
    path = tmp_path / "sam.pt"
    path.write_bytes(tiny_bytes)
    assert weights.ensure_checkpoint(path, download=False) == path
    monkeypatch.setenv("SAM_CHECKPOINT", str(path))
    assert weights.ensure_checkpoint() == path  # $SAM_CHECKPOINT is honoured
    assert "published layout OK" in weights.weights_status(path)


def test_existing_corrupt_checkpoint_is_refused_and_kept(tmp_path):
    path = tmp_path / "sam.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        weights.ensure_checkpoint(path)
    assert path.exists()  # never delete a file the user put there
    assert "unusable" in weights.weights_status(path)


def test_missing_without_download_says_how_to_provide(tmp_path):
    path = tmp_path / "w" / "sam_ffhq_aging.pt"
    with pytest.raises(weights.WeightsUnavailableError) as info:
        weights.ensure_checkpoint(path, download=False)
    msg = str(info.value)
    assert str(path) in msg and "SAM_CHECKPOINT" in msg and weights.DRIVE_FILE_ID in msg and "--checkpoint" in msg
    assert isinstance(info.value, FileNotFoundError)
    assert "missing" in weights.weights_status(path)


def test_no_download_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_NO_DOWNLOAD", "1")
    calls: list = []
    _fake_hf(monkeypatch, b"x", calls)
    with pytest.raises(weights.WeightsUnavailableError):
        weights.ensure_checkpoint(tmp_path / "sam.pt")
    assert calls == []


def test_hub_download_validates_then_renames(tmp_path, tiny_bytes, monkeypatch):
    monkeypatch.setenv("SAM_HF_REPO", "someone/sam-mirror")
    calls: list = []
    _fake_hf(monkeypatch, tiny_bytes, calls)
    target = tmp_path / "weights" / "sam_ffhq_aging.pt"
    seen = []
    real_validate = weights.validate_checkpoint

    def spy(path):
        seen.append((Path(path).name, target.exists()))
        real_validate(path)

    monkeypatch.setattr(weights, "validate_checkpoint", spy)
    assert weights.ensure_checkpoint(target, quiet=True) == target
    assert calls == [("someone/sam-mirror", "sam_ffhq_aging.pt")]
    assert seen == [("sam_ffhq_aging.pt.partial", False)]  # validated as .partial, before it is in place
    assert target.read_bytes() == tiny_bytes
    assert _leftovers(target.parent) == ["sam_ffhq_aging.pt"]  # no .partial, no hub temp folder
    SAM.from_checkpoint(target)


def test_drive_fallback_with_confirm_page(tmp_path, tiny_bytes, monkeypatch, drive):
    _fake_hf(monkeypatch, None)  # hub unreachable
    drive.payload = tiny_bytes
    target = tmp_path / "sam_ffhq_aging.pt"
    assert weights.ensure_checkpoint(target, quiet=True) == target
    assert target.read_bytes() == tiny_bytes
    assert drive.requests[0].startswith("/uc?") and weights.DRIVE_FILE_ID in drive.requests[0]
    assert drive.requests[1].startswith("/download?")
    assert _leftovers(tmp_path) == ["sam_ffhq_aging.pt"]


def test_corrupt_download_is_refused_and_removed(tmp_path, tiny_bytes, monkeypatch, drive):
    monkeypatch.setenv("SAM_HF_REPO", "someone/sam-mirror")
    _fake_hf(monkeypatch, tiny_bytes[: len(tiny_bytes) // 2])  # truncated on the hub
    drive.payload = b"<garbage>" * 100  # and garbage on Drive
    target = tmp_path / "sam_ffhq_aging.pt"
    with pytest.raises(weights.WeightsUnavailableError) as info:
        weights.ensure_checkpoint(target, quiet=True)
    msg = str(info.value)
    assert msg.count("not a valid SAM checkpoint and was deleted") == 2
    assert "Hugging Face" in msg and "Google Drive" in msg
    assert _leftovers(tmp_path) == []


def test_corrupt_hub_file_falls_back_to_drive(tmp_path, tiny_bytes, monkeypatch, drive):
    monkeypatch.setenv("SAM_HF_REPO", "someone/sam-mirror")
    _fake_hf(monkeypatch, b"\x00" * 64)
    drive.payload = tiny_bytes
    target = tmp_path / "sam_ffhq_aging.pt"
    assert weights.ensure_checkpoint(target, quiet=True) == target
    assert _leftovers(tmp_path) == ["sam_ffhq_aging.pt"]


def test_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_HF_REPO", "someone/sam-mirror")
    _fake_hf(monkeypatch, None)  # and DRIVE_URL points at a closed local port (see _isolated)
    target = tmp_path / "sam_ffhq_aging.pt"
    with pytest.raises(weights.WeightsUnavailableError) as info:
        weights.ensure_checkpoint(target, quiet=True)
    msg = str(info.value)
    assert "offline?" in msg and "ConnectionError" in msg and "SAM_CHECKPOINT" in msg and str(target) in msg
    assert _leftovers(tmp_path) == []


def test_confirm_url_parsing():
    base = "https://drive.google.com/uc?export=download&id=X"
    old = '<a href="/uc?export=download&amp;confirm=AbC_1&amp;id=X">Download anyway</a>'
    assert weights._drive_confirm_url(old, base) == base + "&confirm=AbC_1"
    form = ('<form action="https://drive.usercontent.google.com/download" method="get">'
            '<input type="hidden" name="id" value="X"><input type="hidden" name="confirm" value="t"></form>')
    assert weights._drive_confirm_url(form, base) == "https://drive.usercontent.google.com/download?id=X&confirm=t"
    assert weights._drive_confirm_url("<html>quota exceeded</html>", base) is None


def test_cli_entry(tmp_path, tiny_bytes, capsys):
    path = tmp_path / "sam.pt"
    path.write_bytes(tiny_bytes)
    assert weights.main([str(path)]) == 0
    assert "published layout OK" in capsys.readouterr().out
    assert weights.main([str(tmp_path / "nope.pt")]) == 1


def test_no_hub_repository_is_assumed(tmp_path, tiny_bytes, monkeypatch, drive):
    calls: list = []
    _fake_hf(monkeypatch, tiny_bytes, calls)
    drive.payload = tiny_bytes
    assert weights.ensure_checkpoint(tmp_path / "sam_ffhq_aging.pt", quiet=True).exists()
    assert calls == []  # only the authors' link was used
