"""The SAM checkpoint (``sam_ffhq_aging.pt``): where it is, how it is fetched, how it is checked and loaded.

Everything about the checkpoint file lives here, and the app, the CLI and ``python -m sam weights`` reach it only
through :meth:`sam.pipeline.AgingPipeline.from_pretrained`, which calls :func:`ensure` then :func:`load_model`.

* **Where** (:func:`locate`): the ``path`` argument, else ``$SAM_CHECKPOINT``, else ``weights/sam_ffhq_aging.pt``
  when a ``weights/`` folder sits next to the ``sam`` package (a source checkout, the Docker image), else a copy
  in the Hugging Face cache when a mirror is configured (``$SAM_HF_REPO``; what a Space's ``preload_from_hub``
  fills), else the per-user cache ``$SAM_CACHE_DIR`` or ``$XDG_CACHE_HOME/sam-age`` (``~/.cache/sam-age``).
* **Fetching** (:func:`fetch`): from the Hugging Face Hub with ``huggingface_hub`` when ``$SAM_HF_REPO`` names
  a mirror, else (or when that fails) from the authors' Google Drive file with ``gdown``. Both show progress bars
  and resume an interrupted transfer on the next run; a transfer that fails for good leaves nothing behind.
* **Checking** (:func:`verify`): a file that arrives from outside (a download, or ``weights --check``) must have
  the *published* layout (:mod:`sam.network.layout`: every tensor name and shape, the fixed FIR kernels,
  ``latent_avg`` and the 1024 px ``opts``), and finite weights. Its own ``opts`` are not
  trusted to describe it.
* **Loading** (:func:`load_model`): ``torch.load(weights_only=True)``, memory-mapped; every ``opts`` field the
  model reads is validated (:func:`config_from_opts`), then tensor names and shapes are checked strictly against
  the model those ``opts`` describe, so checkpoints trained here at other sizes load too.

Every failure is a :class:`CheckpointError` with a one-line message; a missing file is
:class:`CheckpointNotFoundError` (also a ``FileNotFoundError``), whose message says what to do.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sam import settings
from sam.network.config import SAMConfig
from sam.network.layout import (
    CheckpointError,
    check_finite,
    check_published,
    check_tensors,
    config_from_opts,
    describe_error,
    published_layout,
)
from sam.network.model import SAM
from sam.network.precision import Precision, apply_precision, precision_for, resolve_precision

__all__ = [
    "CHECKPOINT_NAME",
    "DRIVE_FILE_ID",
    "CheckpointError",
    "CheckpointNotFoundError",
    "published_layout",
    "locate",
    "ensure",
    "fetch",
    "verify",
    "load_file",
    "config_from_opts",
    "check_tensors",
    "load_model",
    "how_to_get",
]

CHECKPOINT_NAME = "sam_ffhq_aging.pt"
DRIVE_FILE_ID = "1XyumF6_fdAxFmxpFcmPf-q84LU_22EMC"  # the authors' "Pretrained Models" link
DRIVE_PAGE = f"https://drive.google.com/file/d/{DRIVE_FILE_ID}"
AUTHORS_REPO = "https://github.com/yuval-alaluf/SAM#pretrained-models"
PUBLISHED_BYTES = 2_270_547_237  # as a public mirror lists it; unverified, so only used to warn about disk space
DRIVE_RETRIES = 5  # reconnections (with HTTP Range) within one run when the connection drops
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the sam package


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint file where it was looked for (and none could be downloaded); the message says what to do."""


# ------------------------------------------------------------------------------------------------------- where


def hf_repo() -> str:
    """The Hugging Face model repository configured as a mirror (``$SAM_HF_REPO``), or ``""``: no default, since
    the authors publish no Hub copy and any unverified name could be taken by anyone."""
    return settings.text("SAM_HF_REPO")


def hf_filename() -> str:
    return settings.text("SAM_HF_FILENAME") or CHECKPOINT_NAME


def hf_revision() -> str | None:
    return settings.text("SAM_HF_REVISION") or None


def checkout_weights_dir() -> Path | None:
    """``weights/`` next to the ``sam`` package (a source checkout or the Docker image); None for a wheel install."""
    folder = PACKAGE_ROOT.parent / "weights"
    return folder if folder.is_dir() or folder.is_symlink() else None


def cache_dir() -> Path:
    """The per-user folder for downloaded checkpoints when there is no ``weights/`` folder."""
    explicit = settings.path("SAM_CACHE_DIR")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()  # the freedesktop convention, not one of ours
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sam-age"


def _hf_cached() -> Path | None:
    if not hf_repo():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(hf_repo(), hf_filename(), revision=hf_revision())
    return Path(found) if isinstance(found, str) else None


def locate(path: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint is, or where it goes when it is fetched (see the module docstring for the order).

    A folder (argument or ``$SAM_CHECKPOINT``) means ``<folder>/sam_ffhq_aging.pt``. Touches no network."""
    explicit = Path(path).expanduser() if path else settings.path("SAM_CHECKPOINT")
    if explicit is not None:
        return explicit / CHECKPOINT_NAME if explicit.is_dir() else explicit
    weights = checkout_weights_dir()
    if weights is not None and (weights / CHECKPOINT_NAME).exists():
        return weights / CHECKPOINT_NAME
    cached = _hf_cached()
    if cached is not None:
        return cached
    return (weights if weights is not None else cache_dir()) / CHECKPOINT_NAME


def how_to_get(target: Path) -> str:
    """What to do when the checkpoint is not at ``target``: the one set of instructions every message ends with."""
    mirror = f" or from the Hugging Face repository {hf_repo()}" if hf_repo() else ""
    return (
        f"Run `python -m sam weights` to download and check it (2.3 GB), or download {CHECKPOINT_NAME} by hand "
        f"from {DRIVE_PAGE} (linked from {AUTHORS_REPO}){mirror} and put it at {target}, or pass its path "
        "(--checkpoint / --checkpoint_path) or set SAM_CHECKPOINT=/path/to/" + CHECKPOINT_NAME
        + "; a Hub mirror is used when SAM_HF_REPO names it. See weights/README.md."
    )


def _not_found(target: Path) -> CheckpointNotFoundError:
    if target.is_symlink():
        return CheckpointNotFoundError(
            f"SAM checkpoint not found: {target} is a link to {os.readlink(target)}, which does not exist. "
            + how_to_get(target)
        )
    partial = _partials(target) + [p for p in [_staged(target)] if p.exists()]
    extra = (f" (an unfinished download, {partial[0].name}, {partial[0].stat().st_size / 1e6:.0f} MB, is next to it: "
             "the next download resumes it)") if partial else ""
    return CheckpointNotFoundError(f"SAM checkpoint not found at {target}{extra}. {how_to_get(target)}")


def _downloads_disabled() -> bool:
    return settings.flag("SAM_NO_DOWNLOAD")


def ensure(path: str | os.PathLike | None = None, download: bool = True, quiet: bool = False) -> Path:
    """The checkpoint's path: :func:`locate`, and when nothing is there, fetch it (unless ``download`` is off or
    ``$SAM_NO_DOWNLOAD`` is set). A fetched file is :func:`verify`-ed before it is put in place; a file already
    there is returned as it is (:func:`load_model` checks its layout).

    Raises:
        CheckpointNotFoundError: absent, and not downloaded (the message says why and what to do).
        CheckpointError: the download arrived but is not the published checkpoint (it was deleted).
    """
    target = locate(path)
    if target.exists():
        return target
    if not download or _downloads_disabled():
        raise _not_found(target)
    return fetch(target, quiet=quiet)


# ------------------------------------------------------------------------------------------------------ fetching


def _partials(target: Path) -> list[Path]:
    """Unfinished Drive downloads for ``target`` (gdown's ``<name>.download<8 chars>.part`` files)."""
    if not target.parent.is_dir():
        return []
    stem = _staged(target).name
    return sorted(p for p in target.parent.glob(stem + "*.part") if len(p.name) == len(stem) + 8 + len(".part"))


def _staged(target: Path) -> Path:
    """Where a complete but not yet checked Drive download waits, so nothing unchecked ever has the final name."""
    return target.with_name(target.name + ".download")


def _prepare_folder(target: Path) -> None:
    """Create ``target``'s folder, or raise a clear error when it is read-only or a broken link."""
    folder = target.parent
    if folder.is_symlink() and not folder.exists():
        raise CheckpointNotFoundError(
            f"cannot download the SAM checkpoint into {folder}: it is a link to {os.readlink(folder)}, which does "
            f"not exist. Create that folder (or mount a volume there), or set SAM_CHECKPOINT to a writable path. "
            + how_to_get(target)
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointNotFoundError(
            f"cannot download the SAM checkpoint: cannot create {folder} ({exc.strerror}). " + how_to_get(target)
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CheckpointNotFoundError(
            f"cannot download the SAM checkpoint: {folder} is read-only. Mount it writable, or set SAM_CHECKPOINT "
            f"to a path in a writable folder, or put the file there by hand. " + how_to_get(target)
        )
    free = shutil.disk_usage(folder).free
    have = sum(p.stat().st_size for p in _partials(target))
    if free + have < PUBLISHED_BYTES + (64 << 20):
        raise CheckpointNotFoundError(
            f"cannot download the SAM checkpoint: {folder} has {free / 1e9:.1f} GB free and the file needs about "
            f"{PUBLISHED_BYTES / 1e9:.1f} GB. Free some space or set SAM_CHECKPOINT to another disk. "
            + how_to_get(target)
        )


Source = Callable[[Path, bool], Path]


def _sources() -> list[tuple[str, Source]]:
    hub = [(f"the Hugging Face Hub ({hf_repo()})", _fetch_hub)] if hf_repo() else []
    return hub + [("the authors' Google Drive file", _fetch_drive)]


def fetch(target: str | os.PathLike, quiet: bool = False) -> Path:
    """Fetch the checkpoint for ``target``, :func:`verify` it, and return where it now is.

    Sources in order: the Hub mirror (``$SAM_HF_REPO``, into the Hugging Face cache), then Google Drive (into
    ``target``). A file that fails :func:`verify` is deleted; an interrupted transfer stays as a partial file that
    the next run resumes.

    Raises:
        CheckpointNotFoundError: every source failed (offline, quota, ...): each reason, then what to do.
        CheckpointError: a source sent a file that is not the published checkpoint, and no other source worked.
    """
    target = Path(target).expanduser()
    failures: list[str] = []
    bad_file = False
    for name, source in _sources():
        if not quiet:
            print(f"Downloading {CHECKPOINT_NAME} from {name} ...", file=sys.stderr)
        try:
            got = source(target, quiet)
        except CheckpointNotFoundError:
            raise  # the destination itself is unusable (read-only, no space): no source can help
        except CheckpointError as exc:
            bad_file = True
            failures.append(f"{name}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - network and service errors of every kind: try the next source
            failures.append(f"{name}: {describe_error(exc)}")
            continue
        if not quiet:
            print(f"Saved and checked {got} ({got.stat().st_size / 1e9:.2f} GB).", file=sys.stderr)
        return got
    error = CheckpointError if bad_file else CheckpointNotFoundError
    raise error(f"SAM checkpoint not at {target}, and downloading it failed: " + "; ".join(failures)
                + f". {how_to_get(target)}")


def _accept(path: Path, remove: Callable[[], None]) -> None:
    """:func:`verify` a fresh download; on failure ``remove`` it and raise one line saying it was deleted."""
    try:
        verify(path)
    except CheckpointError as exc:
        remove()
        raise CheckpointError(f"the downloaded file is not the published SAM checkpoint and was deleted ({exc})") \
            from None


def _fetch_hub(target: Path, quiet: bool) -> Path:  # noqa: ARG001 - the hub shows its own progress bar
    """``hf_hub_download`` into the Hugging Face cache (it resumes ``.incomplete`` files itself)."""
    from huggingface_hub import hf_hub_download

    got = Path(hf_hub_download(hf_repo(), hf_filename(), revision=hf_revision()))

    def remove() -> None:
        blob = got.resolve()
        got.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)

    _accept(got, remove)
    return got


class DriveRefusedError(OSError):
    """Google Drive answered with a web page instead of the file (quota, permissions, sign-in)."""


def _drive_message(text: str) -> str:
    low = text.lower()
    if "too many users" in low or "quota" in low or "exceeded" in low:
        return ("Google Drive refuses the download for now: too many people downloaded this file recently (Drive's "
                "daily quota for shared files). Try again in a few hours, or open the link in a browser while "
                "signed in to Google and download it there")
    return ("Google Drive answered with a web page instead of the file (" + " ".join(text.split())[:200]
            + "); open the link in a browser to see why")


def _fetch_drive(target: Path, quiet: bool) -> Path:
    """``gdown`` into ``<target>.download`` (resuming a ``.part`` file left by an earlier run), check, rename."""
    import gdown
    from gdown.exceptions import DownloadError, FileURLRetrievalError

    _prepare_folder(target)
    staged = _staged(target)
    try:
        gdown.download(id=DRIVE_FILE_ID, output=str(staged), quiet=quiet, resume=True, retries=DRIVE_RETRIES,
                       use_cookies=False)
    except FileURLRetrievalError as exc:
        raise DriveRefusedError(_drive_message(str(exc))) from None
    except DownloadError as exc:
        if "multiple temporary files" in str(exc):  # ours to tidy: keep the largest, the next run resumes it
            for p in sorted(_partials(target), key=lambda p: p.stat().st_size)[:-1]:
                p.unlink(missing_ok=True)
        kept = _partials(target)
        if kept:
            raise OSError(f"the transfer stopped after {kept[0].stat().st_size / 1e6:.0f} MB (the connection dropped); "
                          f"{kept[0].name} is kept and the next run resumes it") from None
        raise
    _check_not_html(staged)
    _accept(staged, lambda: staged.unlink(missing_ok=True))
    os.replace(staged, target)
    return target


def _check_not_html(path: Path) -> None:
    """A web page saved in place of the file (an HTML quota or sign-in page) gets a message, and is deleted."""
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<")):
        text = head.decode("utf-8", "replace")
        path.unlink(missing_ok=True)
        raise DriveRefusedError(_drive_message(text) + "; the page was deleted")


# ------------------------------------------------------------------------------------------------------ checking


def load_file(path: str | os.PathLike, mmap: bool = True) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` (no code is unpickled), memory-mapped where the format allows;
    every failure is one readable :class:`CheckpointError`. Returns ``{'state_dict', 'latent_avg', 'opts', ...}``."""
    path = Path(path)
    if not path.exists():
        raise _not_found(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish")
    with open(path, "rb") as fh:
        head = fh.read(256).lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        raise CheckpointError(
            f"{path} is a web page (HTML), not a checkpoint: probably Google Drive's quota or sign-in page saved "
            "in place of the file. Delete it and download again (`python -m sam weights`), or download in a browser"
        )
    use_mmap = mmap and zipfile.is_zipfile(path)  # mmap needs the zip-based format (torch >= 1.6)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except Exception as exc:  # noqa: BLE001 - every failure here means "not a usable checkpoint"
        hint = "it may be truncated (an interrupted download?) or not a PyTorch checkpoint"
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            hint = "it holds Python objects other than tensors and plain values, which are not loaded for safety"
        raise CheckpointError(f"cannot read checkpoint {path} ({size / 1e6:.1f} MB): {hint} ({describe_error(exc)})") \
            from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        found = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a SAM checkpoint: expected a dict with 'state_dict', 'latent_avg' and 'opts', found {found}"
        )
    return ckpt


def verify(path: str | os.PathLike) -> None:
    """The check for a file accepted for the first time (a download, ``python -m sam weights --check``): readable,
    the published layout (not the file's own ``opts``), and finite weights. Raises :class:`CheckpointError`.

    Reads the whole file once (memory-mapped: a few seconds for 2.3 GB)."""
    path = Path(path)
    ckpt = load_file(path, mmap=True)
    check_published(ckpt, str(path))
    check_finite(ckpt, str(path))


# ------------------------------------------------------------------------------------------------------- loading


def _prefault(model: torch.nn.Module) -> None:
    """Read one value per memory page of every tensor, so the memory-mapped weights are paged in now (during
    loading) rather than during the first forward pass."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.numel() > 1024:
                t.reshape(-1)[::1024].sum()


def _latent_avg(value: Any, config: SAMConfig, source: str) -> torch.Tensor:
    n, d = config.n_styles, config.style_dim
    if value is None:
        if config.start_from_encoded_w_plus or config.start_from_latent_avg:
            raise CheckpointError(f"{source} has no 'latent_avg', which this model adds to its codes")
        return torch.zeros(n, d)
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{source}: 'latent_avg' is a {type(value).__name__}, not a tensor")
    value = value.detach().float()
    if tuple(value.shape) in ((1, d), (d,)):
        value = value.reshape(1, d).repeat(n, 1)
    if tuple(value.shape) != (n, d):
        raise CheckpointError(f"{source}: 'latent_avg' has shape {list(value.shape)}, expected [{n}, {d}]")
    return value.clone()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", mmap: bool = True,
               precision: str | Precision = "auto", int8_style_heads: bool = False) -> SAM:
    """A :class:`~sam.network.model.SAM` in eval mode from a checkpoint file in the published format: the one loader
    (the pipeline's ``from_pretrained``, training, the benchmarks and the tests all load through it).

    The ``opts`` are validated (:func:`config_from_opts`), tensors are checked strictly against the model they
    describe and, where the file format allows, memory-mapped and assigned without a copy. ``precision``:
    ``"auto" | "fp32" | "bf16" | "fp16"`` by the one rule of :func:`sam.network.precision.precision_for` (``auto``:
    exact float32, and bfloat16 for the work labelled fast on CPUs with native bfloat16). ``int8_style_heads`` (CPU,
    approximate): see :mod:`sam.network.quantize`."""
    path = Path(path)
    ckpt = load_file(path, mmap=mmap)
    opts = ckpt.get("opts")
    config = config_from_opts(opts)
    with torch.device("meta"):
        model = SAM(config, dict(opts or {}))
    state = ckpt["state_dict"]
    check_tensors({k: tuple(v.shape) for k, v in model.state_dict().items()}, state, str(path))
    state = {k: (v.float() if v.is_floating_point() and v.dtype != torch.float32 else v) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if mmap and torch.device(device).type == "cpu":
        _prefault(model)
    model.latent_avg = _latent_avg(ckpt.get("latent_avg"), config, str(path))
    model.pretrained_encoder.requires_grad_(False)
    model.opts["device"] = str(device)
    model = apply_precision(model.to(device).eval(), resolve_precision(precision_for(precision, device,
                                                                                      int8_style_heads), device))
    if int8_style_heads:
        from sam.network.quantize import quantize_style_heads

        quantize_style_heads(model)
    return model
