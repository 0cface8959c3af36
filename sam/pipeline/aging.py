"""The aging pipeline: aligned face in, the same face at chosen ages out. The one API the app and the CLI call.

It splits SAM's forward pass (paper Sec. 3) by what depends on the target age:

* ``encode``  (once per photo): the RGB tensor and the frozen pretrained encoder's code ``E_pre(x)``;
* ``latents`` (per age, batched): ``E([x, age/100]) + E_pre(x) + latent_avg``;
* ``render``  (per code, batched): the StyleGAN2 decoder, at full size (1024), pooled to a smaller size like
  the published ``resize`` option, or stopped early at a smaller size for fast previews.

Noise is fixed (the generator's stored noise maps) unless asked otherwise, so the same input gives the same
output, and interpolated codes (lifespan videos) do not flicker.

Every network pass holds the pipeline's ``lock``: one pass at a time, so memory stays bounded. The lock is the
owner's to choose: a plain re-entrant lock by default; the web app hands in the priority lock of its scheduler
(:class:`sam.serving.scheduler.ModelLock`: slider previews before videos before the background warm-up). Every
model call goes through ``call`` (by default a plain method call; on Hugging Face ZeroGPU the app hands in
:func:`sam.serving.zerogpu.call`). The pipeline knows nothing of either policy. The per-face code caches have their
own small lock, so reading them never waits for a pass. Long calls take ``should_stop`` (a function polled between
images) and raise :class:`~sam.cancel.JobCancelledError` when it says so.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sam.ages import to_age, to_ages
from sam.cancel import Progress, ShouldStop, check_stop
from sam.faces.image_io import load_image
from sam.network import checkpoint
from sam.network.mixing import random_w_codes
from sam.network.model import SAM, add_age_channel, mix_styles
from sam.network.precision import Precision, fast_encoder

__all__ = ["AgingPipeline", "EncodedFace", "SideBySide", "ModelCall", "direct_call", "to_tensor", "to_pil",
           "default_device"]

ImageLike = Image.Image | np.ndarray | str | os.PathLike
ModelCall = Callable[..., Any]
"""``call(owner, method, *args, device=..., **kwargs)``: how the pipeline runs ``getattr(owner, method)(*args,
**kwargs)`` (see :func:`direct_call`)."""


def direct_call(owner: torch.nn.Module, method: str, *args: Any, device: torch.device | str, **kwargs: Any) -> Any:
    """The default :data:`ModelCall`: a plain call of the model's method or submodule (``device`` is where the
    tensors already are)."""
    return getattr(owner, method)(*args, **kwargs)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def to_tensor(image: ImageLike, size: int = 256) -> torch.Tensor:
    """An aligned face -> ``3 x size x size`` float tensor in [-1, 1] (bilinear resize, as the published transforms).

    Accepts a PIL image, or anything :func:`sam.faces.image_io.load_image` reads (path, bytes, array). Alignment is not
    done here (see ``sam.faces.align``).
    """
    if not isinstance(image, Image.Image):
        image = load_image(image)  # paths, bytes, arrays: the safe loader (EXIF, modes, size limit, clear errors)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """``B x 3 x H x W`` (or ``3 x H x W``) tensors in [-1, 1] -> RGB PIL images (clipped, rounded)."""
    if images.ndim == 3:
        images = images[None]
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in arr]


def _batch(images: list[torch.Tensor]) -> torch.Tensor:
    """``to_tensor`` outputs as one batch; a single one keeps its memory layout (the same numbers as a photo's pass)."""
    return images[0][None] if len(images) == 1 else torch.stack(images)


@dataclass
class EncodedFace:
    """The age-independent part of a face: its network input and the frozen encoder's W+ code."""

    rgb: torch.Tensor  # 1 x 3 x 256 x 256 in [-1, 1]
    pretrained_codes: torch.Tensor  # 1 x n_styles x style_dim, without latent_avg
    age_codes: dict[int, torch.Tensor] = field(default_factory=dict)  # W+ per integer age, filled on demand
    fast_codes: dict[int, torch.Tensor] = field(default_factory=dict)  # W+ from the reduced-precision encoder


class SideBySide:
    """Two worker threads for two independent network passes on a CPU, each pass on half of the CPU threads.

    PyTorch splits one pass over all CPU threads, and every layer then waits for the slowest of them: when another
    process takes part of a core (the visitor's browser, when it runs on the same machine; a second server), both
    halves stall. Two independent passes side by side, each on its own threads, lose only what the busy core loses.
    Used for the two encoders of a photo's first preview (:meth:`AgingPipeline.first_look`). Measured on a 2-core
    Intel Xeon (AMX), the two bfloat16 encoders at full size: 0.66 s one after the other vs 0.62-0.70 s side by
    side on a quiet machine; 1.0 s vs 0.74 s while another process takes 40 % of one core. The workers are made
    on first use; the process-wide thread count stays as it was.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _workers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                threads = torch.get_num_threads()
                ready = threading.Barrier(3)

                def init() -> None:
                    torch.set_num_threads(max(1, threads // 2))  # this thread's count (and, for a moment, the default)
                    ready.wait()

                pool = ThreadPoolExecutor(2, thread_name_prefix="sam-side-by-side", initializer=init)
                for _ in range(2):  # the second submit finds no idle worker (the first waits here): two threads
                    pool.submit(lambda: None)
                ready.wait()
                torch.set_num_threads(threads)  # the default again, for every thread made from now on
                self._pool = pool
            return self._pool

    def run(self, first: Callable[[], torch.Tensor], second: Callable[[], torch.Tensor]) -> tuple[Any, Any]:
        """``(first(), second())``, computed at the same time (inference mode); an error of either is raised."""

        def call(fn: Callable[[], Any]) -> Any:
            with torch.inference_mode():
                return fn()

        pool = self._workers()
        a, b = pool.submit(call, first), pool.submit(call, second)
        return a.result(), b.result()


class AgingPipeline:
    """Age aligned faces with a loaded :class:`~sam.network.model.SAM` model.

    >>> pipe = AgingPipeline.from_pretrained()           # found or downloaded: see sam.network.checkpoint
    >>> young, old = pipe("aligned.png", [10, 80])         # PIL images, 1024 x 1024
    """

    def __init__(self, model: SAM, batch_size: int = 4, cache_size: int = 8, lock: Any = None,
                 call: ModelCall | None = None):
        self.model = model.eval()
        # one network pass at a time: a plain lock, or the owner's (the web app's: the most urgent call first)
        self.lock = lock if lock is not None else threading.RLock()
        self.call: ModelCall = call or direct_call  # how each model call is made (ZeroGPU: inside spaces.GPU)
        self._cache_lock = threading.RLock()  # the code caches (held briefly, never during a pass)
        self.batch_size = max(1, int(batch_size))
        self._cache: OrderedDict[str, EncodedFace] = OrderedDict()
        self._cache_size = cache_size
        self.checkpoint_path: Path | None = None  # the file from_pretrained loaded
        self._side_by_side = SideBySide()

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike | None = None, download: bool = True, device: str | torch.device | None = None,
        int8_style_heads: bool = False, verify: bool = False, precision: str = "auto", **kwargs
    ) -> AgingPipeline:
        """Find the checkpoint, fetch it if it is missing (and ``download`` is on), check it and load it onto
        ``device`` (default: CUDA if present). Where it is looked for and how it is fetched and checked: see
        :mod:`sam.network.checkpoint`. The one way the app, the CLI and ``python -m sam weights`` load the model.

        ``verify`` first checks the file is the published model with finite weights
        (:func:`sam.network.checkpoint.verify`,
        reads the whole file; a download is always checked so). ``int8_style_heads`` (CPU only) trades exactness
        for speed: see :mod:`sam.network.quantize`. ``precision``: ``"auto" | "fp32" | "bf16" | "fp16"``, see
        :mod:`sam.network.precision` (``auto``: full-size results exact float32, previews and videos bfloat16 where
        the CPU has native bfloat16). Other keywords go to the pipeline itself (``batch_size``, ``lock``, ``call``).

        Raises:
            sam.network.checkpoint.CheckpointNotFoundError: no file, and none downloaded; the message says what to do.
            sam.network.checkpoint.CheckpointError: the file is unreadable or not a SAM checkpoint.
        """
        found = checkpoint.ensure(path, download=download)
        if verify:
            checkpoint.verify(found)
        model = checkpoint.load_model(found, device=device or default_device(), precision=precision,
                                      int8_style_heads=int8_style_heads)
        pipe = cls(model, **kwargs)
        pipe.checkpoint_path = found
        return pipe

    # ----------------------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.model.latent_avg.device

    @property
    def precision(self) -> Precision:
        """The exact and fast dtypes (see :mod:`sam.network.precision`)."""
        return self.model.precision

    @property
    def input_size(self) -> int:
        return self.model.config.encoder.input_size

    @property
    def output_size(self) -> int:
        return self.model.config.output_size

    @property
    def n_styles(self) -> int:
        """Rows of a W+ code (18 at 1024 px): the layers style mixing can take from another code."""
        return self.model.config.n_styles

    @torch.inference_mode()
    def encode(self, image: ImageLike | EncodedFace, cache: bool = True) -> EncodedFace:
        """Run the age-independent part once (cached per image content; ``cache=False``: neither looked up nor
        stored, e.g. for video frames that must not push the photos' faces out of the cache)."""
        if isinstance(image, EncodedFace):
            return image
        rgb = to_tensor(image, self.input_size)
        key = hashlib.sha1(rgb.numpy().tobytes()).hexdigest() if cache else None
        if key is not None:
            with self._cache_lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
        rgb = rgb[None].to(self.device)
        with self.lock:
            if key is not None:
                with self._cache_lock:  # computed by another request while this one waited
                    if key in self._cache:
                        return self._cache[key]
            face = EncodedFace(rgb=rgb, pretrained_codes=self.call(self.model, "encode_pretrained", rgb,
                                                                      device=self.device))
        if key is not None:
            with self._cache_lock:
                self._cache[key] = face
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return face

    @torch.inference_mode()
    def first_look(self, image: ImageLike, target_ages: Sequence[float]) -> torch.Tensor:
        """W+ codes (``len(ages) x n_styles x style_dim``) for a photo's very first preview, shown while its exact
        encoding (:meth:`encode`) follows: both encoders in the fast dtype of :attr:`precision`, nothing cached.
        On a CPU with two or more threads the two encoders run side by side (:class:`SideBySide`). When the fast
        dtype is the exact one this is :meth:`latents` (exact, cached)."""
        m = self.model
        if self.precision.fast == self.precision.exact or not m.config.start_from_encoded_w_plus:
            return self.latents(image, target_ages, fast=True)
        rgb = to_tensor(image, self.input_size)[None].to(self.device)
        ages = to_ages(target_ages)
        x4 = add_age_channel(rgb.expand(len(ages), -1, -1, -1), ages)
        with self.lock:
            if self.device.type == "cpu" and self.call is direct_call and torch.get_num_threads() > 1:
                frozen, trained = fast_encoder(m, "pretrained_encoder"), fast_encoder(m)
                pre, residual = self._side_by_side.run(lambda: frozen(rgb), lambda: trained(x4))
                return m.add_base(residual, pre.expand(len(ages), -1, -1))
            pre = self.call(m, "encode_pretrained", rgb, fast=True, device=self.device)
            return self.call(m, "encode", x4, pretrained_codes=pre.expand(len(ages), -1, -1), fast=True,
                                device=self.device)

    @torch.inference_mode()
    def encode_frames(self, images: Sequence[ImageLike], batch: int = 1) -> torch.Tensor:
        """The frozen encoder's codes of several aligned faces (``N x n_styles x style_dim``), never cached (video
        frames: the photos' faces stay in the cache), ``batch`` faces per network pass."""
        out = []
        for i in range(0, len(images), max(1, int(batch))):
            x = _batch([to_tensor(im, self.input_size) for im in images[i : i + max(1, int(batch))]]).to(self.device)
            with self.lock:
                out.append(self.call(self.model, "encode_pretrained", x, device=self.device))
        if not out:
            return torch.empty(0, self.n_styles, self.model.config.style_dim, device=self.device)
        return torch.cat(out)

    @torch.inference_mode()
    def codes_at(self, images: Sequence[ImageLike], pretrained_codes: torch.Tensor, target_age: float,
                 fast: bool = False, batch: int = 1) -> torch.Tensor:
        """W+ codes of several faces at one age, each with its own frozen-encoder code (e.g. smoothed over time):
        ``E([x, age]) + pretrained_codes + latent_avg``, not cached, ``batch`` faces per pass (as :meth:`latents`
        for one face)."""
        age = to_age(target_age)
        approx = fast and self.precision.fast != self.precision.exact
        step = max(1, int(batch))
        out = []
        for i in range(0, len(images), step):
            rgb = _batch([to_tensor(im, self.input_size) for im in images[i : i + step]]).to(self.device)
            x4 = add_age_channel(rgb, [age] * rgb.shape[0])
            with self.lock:
                out.append(self.call(self.model, "encode", x4, pretrained_codes=pretrained_codes[i : i + step],
                                        fast=approx, device=self.device))
        if not out:
            return torch.empty(0, self.n_styles, self.model.config.style_dim, device=self.device)
        return torch.cat(out)

    @torch.inference_mode()
    def reference_code(self, image: ImageLike | EncodedFace) -> torch.Tensor:
        """W+ of a face without aging (``pretrained_encoder + latent_avg``): the code a reference image injects."""
        face = self.encode(image)
        return face.pretrained_codes + self.model.latent_avg

    @torch.inference_mode()
    def random_styles(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` random W+ codes from the generator's mapping network (for random style mixing)."""
        def mapping(z: torch.Tensor) -> torch.Tensor:
            return self.call(self.model.decoder, "style", z, device=self.device)

        with self.lock:
            return random_w_codes(self.model, n, seed, mapping)

    @torch.inference_mode()
    def latents(self, image: ImageLike | EncodedFace, target_ages: Sequence[float],
                should_stop: ShouldStop | None = None, fast: bool = False) -> torch.Tensor:
        """W+ codes of the face at each target age: ``len(ages) x n_styles x style_dim``.

        Ages follow :func:`sam.ages.to_age` (integers, rounded half up, as the network sees them); codes are
        cached per face and age, so asking again is free. ``fast``: approximate codes are acceptable (previews,
        videos): the trained encoder runs in the fast dtype of :attr:`precision` (cached apart from the exact
        codes; an exact code is used when there is one).
        """
        face = self.encode(image)
        ages = to_ages(target_ages)
        approx = fast and self.precision.fast != self.precision.exact
        cache = face.fast_codes if approx else face.age_codes
        with self._cache_lock:
            missing = list(dict.fromkeys(a for a in ages if a not in face.age_codes and a not in cache))
        for i in range(0, len(missing), self.batch_size):
            check_stop(should_stop)
            with self.lock:
                with self._cache_lock:  # another request may have computed some while this one waited
                    chunk = [a for a in missing[i : i + self.batch_size] if a not in face.age_codes and a not in cache]
                if not chunk:
                    continue
                n = len(chunk)
                x4 = add_age_channel(face.rgb.expand(n, -1, -1, -1), chunk)
                codes = self.call(self.model, "encode", x4,
                                     pretrained_codes=face.pretrained_codes.expand(n, -1, -1), fast=approx,
                                     device=self.device)
            with self._cache_lock:
                for a, c in zip(chunk, codes):
                    cache[a] = c
        if not ages:
            return torch.empty(0, self.n_styles, self.model.config.style_dim, device=self.device)
        with self._cache_lock:
            return torch.stack([face.age_codes[a] if a in face.age_codes else cache[a] for a in ages])

    def cached_ages(self, image: ImageLike | EncodedFace, fast: bool = False) -> list[int]:
        """The ages whose codes are known for this face (a snapshot, sorted); with ``fast`` the reduced-precision
        codes count too."""
        face = self.encode(image)
        with self._cache_lock:
            return sorted({*face.age_codes, *face.fast_codes} if fast else face.age_codes)

    @torch.inference_mode()
    def preview_latent(
        self, image: ImageLike | EncodedFace, age: float, fast: bool = False
    ) -> tuple[torch.Tensor, bool]:
        """A code for ``age`` without running the encoder when possible.

        Returns ``(code, exact)``: the cached exact code if this age was computed before; else a linear
        interpolation between the nearest cached ages on either side (``exact=False``; fill the cache first with
        :meth:`latents` on key ages, e.g. every 10 years); else the exact code, computed now. With ``fast`` the
        reduced-precision codes count as cached too (exact ones preferred) and a missing code is computed fast.
        """
        face = self.encode(image)
        a = to_age(age)
        with self._cache_lock:  # a snapshot: the key-age warm-up may add entries meanwhile
            known = {**face.fast_codes, **face.age_codes} if fast else dict(face.age_codes)
        if a in known:
            return known[a][None], True
        lower = [k for k in known if k < a]
        upper = [k for k in known if k > a]
        if lower and upper:
            lo, hi = max(lower), min(upper)
            t = (a - lo) / (hi - lo)
            return torch.lerp(known[lo], known[hi], t)[None], False
        return self.latents(face, [a], fast=fast), True

    @torch.inference_mode()
    def render(
        self,
        codes: torch.Tensor,
        size: int | None = None,
        fast: bool = False,
        randomize_noise: bool = False,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
        early: bool | None = None,
    ) -> torch.Tensor:
        """Decode W+ codes to ``N x 3 x size x size`` images in [-1, 1] (the public decoder of the pipeline).

        ``size`` defaults to the generator's resolution. A smaller size is the full image average-pooled down
        (the published ``resize`` pixels), or, with ``fast``, the generator stopped at that resolution. ``fast``
        also runs the generator's feature maps in the fast dtype of :attr:`precision` (e.g. bfloat16).
        ``should_stop`` is polled before each batch (:class:`JobCancelledError` when it returns true). ``early``
        (default: as ``fast``) stops the generator at the smallest power of two >= ``size`` whatever the dtype.
        """
        full = self.output_size
        size = int(size or full)
        if size > full or size < 4:
            raise ValueError(f"size must be between 4 and {full}, got {size}")
        stop_at = None
        if (fast if early is None else early) and size < full:
            stop_at = 1 << (size - 1).bit_length()  # smallest power of two >= size
        out = []
        total = codes.shape[0]
        # On CPU one image at a time is as fast per image as a batch (per-sample weights, measured in
        # bench/) and needs a quarter of the activation memory; GPUs gain from batches.
        step = self.batch_size if self.device.type != "cpu" else 1
        dtype = self.precision.fast if fast else self.precision.exact
        for i in range(0, total, step):
            check_stop(should_stop)
            batch = codes[i : i + step].to(self.device)
            with self.lock:
                img, _ = self.call(self.model, "decoder", [batch], input_is_latent=True,
                                      randomize_noise=randomize_noise, resolution=stop_at,
                                      dtype=None if dtype == torch.float32 else dtype, device=self.device)
            if img.shape[-1] != size:
                img = F.adaptive_avg_pool2d(img, size) if img.shape[-1] % size == 0 else F.interpolate(
                    img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            out.append(img.float().cpu())
            if progress is not None:
                progress(min(i + step, total), total)
        return torch.cat(out) if out else torch.empty(0, 3, size, size)

    def __call__(
        self,
        image: ImageLike | EncodedFace,
        target_ages: Iterable[float] | float,
        size: int | None = None,
        fast: bool = False,
        progress: Progress | None = None,
    ) -> list[Image.Image]:
        """Age one aligned face to each target age; PIL images of side ``size`` (default 1024)."""
        ages = [target_ages] if isinstance(target_ages, (int, float)) else list(target_ages)
        codes = self.latents(image, ages, fast=fast)
        return to_pil(self.render(codes, size=size, fast=fast, progress=progress))

    age = __call__

    def mix_codes(
        self,
        image: ImageLike | EncodedFace,
        target_age: float,
        inject: torch.Tensor | ImageLike | EncodedFace,
        latent_mask: Sequence[int],
        alpha: float | None = None,
    ) -> torch.Tensor:
        """Style mixing (paper Sec. 4.4): the face's code at ``target_age`` with the W+ rows in ``latent_mask``
        taken from each injected code (blended with ``alpha``; replaced when ``None``).

        ``inject`` is a reference face (image or :class:`EncodedFace`: its unaged code is used, see
        :meth:`reference_code`) or ``K x n_styles x style_dim`` codes (e.g. :meth:`random_styles`).
        Returns ``K x n_styles x style_dim`` codes, one per injected code.
        """
        if alpha is not None and not 0.0 <= float(alpha) <= 1.0:  # also refuses NaN
            raise ValueError(f"mix strength must be between 0 and 1, got {alpha}")
        codes = self.latents(image, [target_age])
        injects = inject if isinstance(inject, torch.Tensor) else self.reference_code(inject)
        injects = injects.to(codes.device)
        if injects.ndim == 2:
            injects = injects[None]
        return torch.cat([mix_styles(codes, list(latent_mask), injects[k : k + 1], alpha)
                          for k in range(injects.shape[0])])

    def mix(
        self,
        image: ImageLike | EncodedFace,
        reference: ImageLike | EncodedFace | torch.Tensor,
        target_age: float,
        latent_mask: Sequence[int],
        alpha: float | None = None,
        size: int | None = None,
        fast: bool = False,
    ) -> Image.Image:
        """Age ``image`` and take the W+ rows in ``latent_mask`` from a reference face (blended with ``alpha``)."""
        codes = self.mix_codes(image, target_age, reference, latent_mask, alpha)
        return to_pil(self.render(codes[:1], size=size, fast=fast))[0]
