"""Find, download and validate the SAM checkpoint (``sam_ffhq_aging.pt``).

Where the checkpoint is looked for: ``--checkpoint`` / the ``path`` argument, else ``$SAM_CHECKPOINT``, else
``weights/sam_ffhq_aging.pt`` (see :func:`sam.pipeline.resolve_checkpoint`). When it is absent and downloading is
allowed, it is fetched

1. from the Hugging Face Hub (``huggingface_hub.hf_hub_download``, with its progress bar) when ``$SAM_HF_REPO``
   names a repository holding a copy (file ``$SAM_HF_FILENAME``, default ``sam_ffhq_aging.pt``). The authors
   publish no Hub copy, so no repository is assumed by default: an unverified name could be taken by anyone;
2. else from the authors' published Google Drive file (plain ``urllib`` with a ``tqdm`` bar; the "can't scan
   this file for viruses" confirmation page is handled).

A download goes to ``<target>.partial`` first, is validated against the published layout exactly as
:meth:`sam.model.SAM.from_checkpoint` does (weights-only, strict tensor names and shapes), and only then renamed
into place; a file that fails validation is deleted. Offline (or with ``SAM_NO_DOWNLOAD=1``), a
:class:`WeightsUnavailableError` says how to provide the file by hand.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .model import SAM, CheckpointError
from .pipeline import DEFAULT_CHECKPOINT, resolve_checkpoint

__all__ = [
    "DEFAULT_HF_REPO",
    "DRIVE_FILE_ID",
    "WeightsUnavailableError",
    "ensure_checkpoint",
    "validate_checkpoint",
    "download_checkpoint",
    "weights_status",
    "how_to_provide",
]

CHECKPOINT_NAME = "sam_ffhq_aging.pt"
DEFAULT_HF_REPO = ""  # no official Hub copy exists; set $SAM_HF_REPO to a mirror you trust
DRIVE_FILE_ID = "1XyumF6_fdAxFmxpFcmPf-q84LU_22EMC"  # the authors' "Pretrained Models" link
DRIVE_URL = "https://drive.google.com/uc"  # module attribute so tests can point it at a local server
AUTHORS_REPO = "https://github.com/yuval-alaluf/SAM#pretrained-models"
TIMEOUT_S = 30.0
CHUNK = 1 << 20


class WeightsUnavailableError(FileNotFoundError):
    """The checkpoint is absent and could not be downloaded; the message says how to provide it."""


def hf_repo() -> str:
    return os.environ.get("SAM_HF_REPO") or DEFAULT_HF_REPO


def hf_filename() -> str:
    return os.environ.get("SAM_HF_FILENAME") or CHECKPOINT_NAME


def how_to_provide(target: Path | None = None) -> str:
    """Plain instructions for putting the checkpoint in place by hand."""
    target = target or DEFAULT_CHECKPOINT
    mirror = f" or from the Hugging Face repository {hf_repo()}" if hf_repo() else ""
    return (
        f"Download {CHECKPOINT_NAME} (2.3 GB) from the authors' Google Drive "
        f"(https://drive.google.com/file/d/{DRIVE_FILE_ID}, linked from {AUTHORS_REPO}){mirror}, "
        f"and put it at {target}, or pass --checkpoint /path/to/{CHECKPOINT_NAME}, or set "
        f"SAM_CHECKPOINT=/path/to/{CHECKPOINT_NAME}. On a machine with internet access, `python -m sam weights` "
        "downloads and checks it. See weights/README.md."
    )


def validate_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`~sam.model.CheckpointError` unless ``path`` loads exactly like ``SAM.from_checkpoint``.

    The file is memory-mapped where possible, so checking a 2.3 GB checkpoint reads little of it.
    """
    model = SAM.from_checkpoint(Path(path), device="cpu", mmap=True)
    del model


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def weights_status(path: str | os.PathLike | None = None) -> str:
    """One readable paragraph: where the checkpoint is expected, whether it is there and whether it is valid."""
    target = resolve_checkpoint(path)
    if not target.exists():
        partial = _partial(target)
        extra = f" (an unfinished download, {partial.name}, is next to it)" if partial.exists() else ""
        return f"SAM checkpoint: missing at {target}{extra}. {how_to_provide(target)}"
    try:
        validate_checkpoint(target)
    except (CheckpointError, OSError) as exc:
        return f"SAM checkpoint: {target} is present but unusable: {exc}"
    return f"SAM checkpoint: {target} ({_human(target.stat().st_size)}), published layout OK."


def _partial(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def ensure_checkpoint(
    path: str | os.PathLike | None = None,
    download: bool = True,
    *,
    validate: bool = True,
    quiet: bool = False,
) -> Path:
    """Return the path of a usable checkpoint, downloading it first when it is absent and ``download`` is set.

    Raises:
        WeightsUnavailableError: absent, and downloading is off or failed everywhere (the message says why and
            how to provide the file).
        CheckpointError: an existing file does not have the published layout (it is left alone).
    """
    target = resolve_checkpoint(path)
    if target.exists():
        if validate:
            validate_checkpoint(target)
        return target
    if not download or os.environ.get("SAM_NO_DOWNLOAD", "").strip() not in ("", "0"):
        raise WeightsUnavailableError(f"SAM checkpoint not found at {target}. {how_to_provide(target)}")
    return download_checkpoint(target, quiet=quiet)


Source = tuple[str, Callable[[Path, bool], None]]


def _sources() -> list[Source]:
    hub = [(f"Hugging Face Hub ({hf_repo()})", _download_hf)] if hf_repo() else []
    return hub + [("the authors' Google Drive link", _download_drive)]


def download_checkpoint(target: str | os.PathLike, quiet: bool = False) -> Path:
    """Download to ``target.partial``, validate, rename to ``target``; try each source in turn."""
    target = Path(target).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(target)
    failures = []
    for name, fetch in _sources():
        if not quiet:
            print(f"Downloading {CHECKPOINT_NAME} from {name} to {partial} ...", file=sys.stderr)
        try:
            fetch(partial, quiet)
            validate_checkpoint(partial)
        except CheckpointError as exc:
            partial.unlink(missing_ok=True)
            failures.append(f"{name}: the downloaded file is not a valid SAM checkpoint and was deleted ({exc})")
            continue
        except Exception as exc:  # noqa: BLE001 - network / hub errors of every kind: try the next source
            partial.unlink(missing_ok=True)
            failures.append(f"{name}: {_describe(exc)}")
            continue
        os.replace(partial, target)
        if not quiet:
            print(f"Saved and checked {target} ({_human(target.stat().st_size)}).", file=sys.stderr)
        return target
    raise WeightsUnavailableError(
        f"SAM checkpoint not found at {target}, and downloading it failed (offline?): "
        + "; ".join(failures) + f". {how_to_provide(target)}"
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


# ------------------------------------------------------------------------------------------------ Hugging Face


def _download_hf(dest: Path, quiet: bool) -> None:  # noqa: ARG001 - the hub shows its own progress bar
    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory(prefix=".hf-", dir=dest.parent) as tmp:
        got = hf_hub_download(hf_repo(), hf_filename(), local_dir=tmp)
        shutil.move(got, dest)


# ------------------------------------------------------------------------------------------------ Google Drive


_FORM_RE = re.compile(r"<form[^>]*\baction=\"([^\"]+)\"[^>]*>(.*?)</form>", re.S | re.I)
_INPUT_RE = re.compile(r"<input[^>]*\bname=\"([^\"]+)\"[^>]*\bvalue=\"([^\"]*)\"", re.I)
_CONFIRM_RE = re.compile(r"confirm=([0-9A-Za-z_-]+)")


def _drive_confirm_url(page: str, base: str) -> str | None:
    """The real download URL from Drive's "can't scan for viruses" page (a form, or an old-style link)."""
    m = _FORM_RE.search(page)
    if m:
        action = urllib.parse.urljoin(base, html.unescape(m.group(1)))
        fields = {k: html.unescape(v) for k, v in _INPUT_RE.findall(m.group(2))}
        if fields:
            return action + ("&" if "?" in action else "?") + urllib.parse.urlencode(fields)
    m = _CONFIRM_RE.search(page)
    if m:
        return base + ("&" if "?" in base else "?") + urllib.parse.urlencode({"confirm": m.group(1)})
    return None


def _download_drive(dest: Path, quiet: bool) -> None:
    url = DRIVE_URL + "?" + urllib.parse.urlencode({"export": "download", "id": DRIVE_FILE_ID})
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    for _ in range(3):  # the file itself, or a confirmation page pointing at it
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "sam-age"}), timeout=TIMEOUT_S) as resp:
            ctype = resp.headers.get("Content-Type", "")
            if "text/html" in ctype:
                page = resp.read(1 << 20).decode("utf-8", "replace")
                nxt = _drive_confirm_url(page, resp.geturl())
                if nxt is None or nxt == url:
                    title = re.search(r"<title>(.*?)</title>", page, re.S | re.I)
                    raise OSError("Google Drive returned a web page instead of the file"
                                  + (f" ({html.unescape(title.group(1)).strip()})" if title else "")
                                  + "; it may be over its download quota, try again later")
                url = nxt
                continue
            _stream(resp, dest, quiet)
            return
    raise OSError("Google Drive kept returning confirmation pages")


def _stream(resp, dest: Path, quiet: bool) -> None:
    from tqdm.auto import tqdm

    total = int(resp.headers.get("Content-Length") or 0) or None
    with open(dest, "wb") as fh, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                      desc=CHECKPOINT_NAME, disable=quiet) as bar:
        while chunk := resp.read(CHUNK):
            fh.write(chunk)
            bar.update(len(chunk))
    if total is not None and dest.stat().st_size != total:
        raise OSError(f"download interrupted: got {dest.stat().st_size} of {total} bytes")


def main(argv: list[str] | None = None) -> int:
    """``python -m sam.weights [path]``: download if needed, validate, print the status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        path = ensure_checkpoint(args[0] if args else None)
    except (WeightsUnavailableError, CheckpointError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(weights_status(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
