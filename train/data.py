"""Training data: a folder of (aligned) face images, the published transforms, and target-age sampling.

As published: images resized to 256 x 256 (the encoder's input size), mapped to [-1, 1], randomly flipped
left-right for training; the source and the target of each sample are the same image. Target ages are
``uniform_random`` integers 0..100 or one fixed age; a third of the batches keep their own (estimated) age.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import transforms

from sam.faces.image_io import load_image

__all__ = ["IMAGE_EXTENSIONS", "list_images", "FaceFolder", "EpochSampler", "AgeSampler", "prepare_aligned",
           "NO_AGING_PROB"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NO_AGING_PROB = 1.0 / 3.0


def list_images(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursively), sorted for a reproducible order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return files


def face_transform(size: int) -> transforms.Compose:
    """Resize to ``size`` x ``size`` and map to [-1, 1] (the flip is chosen by the sampler)."""
    return transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                               transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])])


class FaceFolder(Dataset):
    """``(source, target)`` pairs (the same transformed image twice, as in the published ``ffhq_aging`` set).

    An index is an int, or ``(index, flip)`` as drawn by :class:`EpochSampler` (flip: mirror left-right).
    """

    def __init__(self, root: str | Path, size: int = 256):
        self.paths = list_images(root)
        self.transform = face_transform(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int | tuple[int, bool]) -> tuple[torch.Tensor, torch.Tensor]:
        index, flip = index if isinstance(index, tuple) else (index, False)
        img = self.transform(load_image(self.paths[index]))
        if flip:
            img = img.flip(-1)
        return img, img


class EpochSampler(Sampler):
    """Shuffled ``(index, flip)`` pairs; the order and the flips depend on ``seed`` and the epoch only.

    Every process draws the same permutation and takes every ``world_size``-th item from ``rank`` on (the tail that
    does not divide evenly is dropped, as ``DistributedSampler(drop_last=True)`` does). ``set_epoch(e, start)``
    chooses the epoch and skips its first ``start`` items of this process: a resumed run continues mid-epoch.
    """

    def __init__(self, n: int, seed: int, flip: bool = True, rank: int = 0, world_size: int = 1):
        if n < world_size:
            raise ValueError(f"{n} images are fewer than the {world_size} processes")
        self.n, self.seed, self.flip, self.rank, self.world_size = n, seed, flip, rank, world_size
        self.per_rank = n // world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.per_rank:
            raise ValueError(f"start {start} outside 0..{self.per_rank}")
        self.epoch, self.start = epoch, start

    def epoch_items(self) -> list[tuple[int, bool]]:
        """This process' full list for the current epoch (before ``start`` is skipped)."""
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        flips = torch.rand(self.n, generator=g) < 0.5 if self.flip else torch.zeros(self.n, dtype=torch.bool)
        total = self.per_rank * self.world_size
        return [(int(order[i]), bool(flips[i])) for i in range(self.rank, total, self.world_size)]

    def __iter__(self):
        return iter(self.epoch_items()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start


class AgeSampler:
    """Target ages in years: ``uniform_random`` -> integers 0..100, or a fixed age (int / numeric string)."""

    def __init__(self, target_age: str | int | None, seed: int | None = None):
        if target_age is None:
            raise ValueError("--target_age is required: uniform_random or an age in years")
        self.uniform = str(target_age) == "uniform_random"
        if not self.uniform:
            ages = [int(a) for a in str(target_age).split(",")]
            if any(not 0 <= a <= 100 for a in ages):
                raise ValueError(f"target ages must be in 0..100, got {target_age}")
            self.ages = ages
        self.rng = np.random.default_rng(seed)

    def __call__(self, n: int) -> torch.Tensor:
        if self.uniform:
            return torch.from_numpy(self.rng.integers(0, 101, size=n)).float()
        return torch.tensor([self.ages[int(i)] for i in self.rng.integers(0, len(self.ages), size=n)]).float()


def prepare_aligned(src: str | Path, dst: str | Path, size: int = 256) -> Path:
    """FFHQ-align every image under ``src`` into ``dst`` once (kept between runs); undetected faces are skipped."""
    from sam.faces.align import align_face

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    skipped = 0
    for path in list_images(src):
        key = hashlib.sha1(str(path.relative_to(src)).encode()).hexdigest()[:10]
        out = dst / f"{path.stem}_{key}.png"
        if out.exists():
            continue
        try:
            aligned = align_face(load_image(path), output_size=size).image
        except Exception as exc:  # noqa: BLE001 - no face / unreadable: skip this image, keep going
            skipped += 1
            print(f"align: skipping {path}: {exc}", file=sys.stderr)
            continue
        Image.fromarray(np.asarray(aligned)).save(out)
    if skipped:
        print(f"align: {skipped} image(s) under {src} skipped", file=sys.stderr)
    return dst


def seed_worker(worker_id: int) -> None:
    """DataLoader worker seeding (the workers draw nothing now; kept reproducible for any transform that does)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
