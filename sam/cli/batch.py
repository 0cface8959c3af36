"""The run loop every photo command of ``python -m sam`` shares: inputs found and loaded safely (files that are not
images and photos without a face are skipped with a one-line reason), one item per face to process, a progress bar,
outputs kept unless ``--overwrite``, per-item timing, errors kept per item, a summary at the end; under ``torchrun``
each process takes its share of the inputs (:mod:`sam.cli.shard`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from sam.atomic import atomic_path
from sam.cli.shard import Shard, current_shard
from sam.requests import RequestError, read_face_ages, read_faces
from sam.session import FaceSession, GroupSession, Photo

__all__ = ["IMAGE_SUFFIXES", "Item", "Summary", "complete", "iter_items", "latent_mask", "list_inputs",
           "load_pipeline", "output_size", "png_name", "run_items", "save"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


@dataclass
class Item:
    """One face to process: a photo (loaded safely) and which of its faces (or the photo as an aligned face)."""

    path: Path
    name: str  # output file name, e.g. "photo.png"
    photo: Photo
    face_index: int = 0
    already_aligned: bool = False
    faces: list[int] | None = None  # several faces aged together into the whole photo (--faces with --paste_back)
    _session: FaceSession | None = field(default=None, repr=False)

    def session(self, pipe) -> FaceSession:
        """The face session (aligned and encoded once)."""
        if self._session is None:
            self._session = FaceSession(pipe, self.photo, self.face_index, self.already_aligned)
        return self._session

    def group(self, pipe) -> GroupSession:
        """The chosen faces (:attr:`faces`, or the one face) aged together into the whole photo."""
        faces = self.faces if self.faces is not None else [self.face_index]
        return GroupSession(self.photo, [FaceSession(pipe, self.photo, i) for i in faces])


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    existing: int = 0  # items whose outputs were already there
    interrupted: bool = False

    def report(self, out=None) -> None:
        out = out or sys.stderr
        if self.interrupted:
            print(f"\nInterrupted: {len(self.done)} finished ({', '.join(self.done[:5])}"
                  f"{', ...' if len(self.done) > 5 else ''}); run the same command again to do the rest.", file=out)
            return
        print(f"\nDone: {len(self.done)}, skipped: {len(self.skipped)}, failed: {len(self.failed)}", file=out)
        if self.existing:
            print(f"  {self.existing} with outputs already there (use --overwrite to redo them)", file=out)
        for name, why in self.skipped:
            print(f"  skipped {name}: {why}", file=out)
        for name, why in self.failed:
            print(f"  FAILED  {name}: {why}", file=out)

    @property
    def exit_code(self) -> int:
        """130 when interrupted, 0 when something was processed (or everything was already done), else 1."""
        if self.interrupted:
            return 130
        return 0 if self.done or (self.existing and not self.failed) else 1


def list_inputs(data_path: Path, n_images: int | None = None, shard: Shard | None = None) -> list[Path]:
    """The input files, sorted; under torchrun, this rank's share of them (see :mod:`sam.cli.shard`)."""
    if not data_path.exists():
        raise SystemExit(f"error: --data_path {data_path} does not exist")
    files = [data_path] if data_path.is_file() else sorted(p for p in data_path.iterdir() if p.is_file())
    files = [p for p in files if not p.name.startswith(".") and ".partial" not in p.name]
    files = files[:n_images] if n_images else files
    return shard.take(files) if shard is not None else files


def iter_items(args, summary: Summary, all_faces: bool = False) -> Iterator[Item]:
    """Load every input (and find its faces), recording skips with their reason. ``--faces`` (``all``, ``1,3``):
    with ``--paste_back`` one item per photo holding those faces, else one item per face (``name_face1.png``)."""
    for path in list_inputs(Path(args.data_path), getattr(args, "n_images", None), current_shard()):
        name = path.name
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            summary.skipped.append((name, f"not an image file ({path.suffix or 'no extension'})"))
            continue
        try:
            photo = Photo.load(path)
        except (ValueError, OSError) as exc:
            summary.skipped.append((name, str(exc)))
            continue
        if not args.align:
            yield Item(path, name, photo, 0, already_aligned=True)
            continue
        try:
            photo.face(0)  # NoFaceError when there is none
        except ValueError as exc:
            summary.skipped.append((name, str(exc)))
            continue
        spec = getattr(args, "faces", "best")
        try:
            chosen = list(range(len(photo.faces))) if all_faces else read_faces(spec, len(photo.faces))
            if chosen is not None and getattr(args, "face_ages", None):
                read_face_ages(args.face_ages, chosen, 0)
        except RequestError as exc:
            summary.failed.append((name, str(exc)))
            continue
        if chosen is None:
            yield Item(path, name, photo, 0)
        elif getattr(args, "paste_back", False):
            yield Item(path, name, photo, chosen[0], faces=chosen)
        else:
            for i in chosen:
                yield Item(path, f"{path.stem}_face{i}.png", photo, i)


def complete(path: Path) -> bool:
    """An output counts as done only when it exists and is not empty (partial files have other names)."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def run_items(args, summary: Summary, outputs: Callable[[Item], list[Path]], work: Callable[[Item], None],
              all_faces: bool = False) -> list[float]:
    """The loop every command shares: progress bar, skip complete items, per-item timing, errors kept per item.
    Ctrl-C stops after cleaning up the item in progress (``summary.interrupted``)."""
    from tqdm import tqdm

    times: list[float] = []
    n_files = len(list_inputs(Path(args.data_path), getattr(args, "n_images", None), current_shard()))
    items = iter_items(args, summary, all_faces)
    bar = tqdm(items, desc=args.command, unit="img", total=None if all_faces else n_files, file=sys.stderr)
    try:
        for item in bar:
            outs = outputs(item)
            if outs and not args.overwrite and all(complete(p) for p in outs):
                summary.existing += 1
                continue
            t = time.perf_counter()
            try:
                work(item)
            except (ValueError, OSError) as exc:
                summary.failed.append((item.name, str(exc)))
                continue
            dt = time.perf_counter() - t
            times.append(dt)
            summary.done.append(item.name)
            bar.set_postfix_str(f"{item.name}: {dt:.2f}s")
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
    return times


def load_pipeline(args):
    from sam.pipeline import AgingPipeline, default_device

    try:
        return AgingPipeline.from_pretrained(args.checkpoint_path,
                                             device=current_shard().device(args.device) or default_device(),
                                             batch_size=getattr(args, "test_batch_size", 4),
                                             int8_style_heads=args.int8_style_heads,
                                             precision=getattr(args, "precision", None)
                                             or getattr(args, "default_precision", "auto"))
    except ValueError as exc:  # CheckpointError (missing file: what to do), or e.g. int8 heads on a GPU
        raise SystemExit(f"error: {exc}") from None


def output_size(args, pipe) -> int:
    """The side of the images written: 256 px with ``--resize_outputs``, else the model's (never more than it)."""
    return min(256 if args.resize_outputs else pipe.output_size, pipe.output_size)


def latent_mask(args, pipe) -> list[int]:
    """``--latent_mask`` as W+ rows of this model (:func:`sam.network.mixing.parse_latent_mask`); a bad one ends the run
    with its reason."""
    from sam.network.mixing import parse_latent_mask

    try:
        return parse_latent_mask(args.latent_mask, pipe.n_styles)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def save(img: Image.Image, path: Path) -> None:
    """Write under a temporary name and rename when complete (an interrupted save leaves nothing)."""
    with atomic_path(path) as tmp:
        img.save(tmp, format=_format_for(path))


def _format_for(path: Path) -> str:
    ext = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
            ".tiff": "TIFF"}.get(ext, "PNG")


def png_name(name: str) -> str:
    """Output name: keep the input name for formats we write losslessly or commonly, else switch to .png."""
    p = Path(name)
    return name if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp"} else p.stem + ".png"
