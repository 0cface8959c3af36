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
from torch.utils.data import Dataset
from torchvision import transforms

from sam.image_io import load_image

__all__ = ["IMAGE_EXTENSIONS", "list_images", "FaceFolder", "AgeSampler", "prepare_aligned", "NO_AGING_PROB"]

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


def face_transform(size: int, train: bool) -> transforms.Compose:
    steps: list = [transforms.Resize((size, size))]
    if train:
        steps.append(transforms.RandomHorizontalFlip(0.5))
    steps += [transforms.ToTensor(), transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])]
    return transforms.Compose(steps)


class FaceFolder(Dataset):
    """``(source, target)`` pairs (the same transformed image twice, as in the published ``ffhq_aging`` set)."""

    def __init__(self, root: str | Path, size: int = 256, train: bool = True):
        self.paths = list_images(root)
        self.transform = face_transform(size, train)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.transform(load_image(self.paths[index]))
        return img, img


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
    from sam.align import align_face

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
    """DataLoader worker seeding (random flips differ per worker but are reproducible)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
