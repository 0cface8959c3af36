"""The app's per-visitor caching: recently used photos and face sessions (:class:`SessionCache`)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any

from sam.pipeline import AgingPipeline
from sam.requests import read_faces, read_flag, read_number
from sam.session.background import Background
from sam.session.face import FaceSession
from sam.session.group import GroupSession
from sam.session.measures import FaceMeasures
from sam.session.photo import Photo

__all__ = ["SessionCache"]


class SessionCache:
    """Recently used photos and face sessions (LRU, ``size`` entries each), shared by the app's requests."""

    def __init__(self, pipe: AgingPipeline | None, size: int = 8, measures: FaceMeasures | None = None,
                 background: Background | None = None):
        self.pipe = pipe
        self.size = size
        self.measures = measures or FaceMeasures()
        self.background = background or Background()  # the sessions' key-age warm-ups run here
        self._photos: OrderedDict[str, Photo] = OrderedDict()
        self._sessions: OrderedDict[tuple[str, bool, int], FaceSession] = OrderedDict()
        self._lock = threading.Lock()

    def photo(self, src: Any, what: str = "photo") -> Photo:
        """The photo, decoded once: a file seen before (same bytes) is found by a hash of its bytes, without
        decoding it again (every slider move names the same upload)."""
        file_key = _file_key(src)
        with self._lock:
            cached = self._photos.get(file_key) if file_key else None
            if cached is not None:
                self._photos.move_to_end(file_key)
                return cached
        loaded = Photo.load(src, what)
        with self._lock:
            photo = self._photos.get(loaded.key, loaded)  # the same picture from another file or source
            for key in {loaded.key, file_key} - {None}:
                self._photos[key] = photo
                self._photos.move_to_end(key)
            _trim(self._photos, 2 * self.size)
            return photo

    def session(self, src: Any, already_aligned: Any = False, face_index: Any = 0,
                what: str = "photo") -> FaceSession:
        """The session of a photo's face (made once: alignment and encoding are not repeated)."""
        if self.pipe is None:
            raise RuntimeError("the model is not loaded")
        aligned = read_flag(already_aligned, "already_aligned")
        idx = 0 if aligned else int(read_number(face_index, "face index", 0, integer=True, default=0))
        photo = self.photo(src, what)
        key = (photo.key, aligned, idx)
        with self._lock:
            cached = self._sessions.get(key)
            if cached is not None and idx == 0 and cached.face is not None and photo.faces_known \
                    and cached.face is not photo.face(0, what):
                cached = None  # made from the quick look, whose best face the full look did not confirm
                del self._sessions[key]
            if cached is not None:
                self._sessions.move_to_end(key)
                return cached
        made = FaceSession(self.pipe, photo, idx, aligned, self.measures, what, self.background)
        with self._lock:
            made = self._sessions.setdefault(key, made)
            self._sessions.move_to_end(key)
            _trim(self._sessions, self.size)
            return made


    def group(self, src: Any, faces: Any, face_index: Any = 0, what: str = "photo") -> GroupSession:
        """The faces ``faces`` (:func:`read_faces`; ``"best"``: the one face ``face_index``) of a photo, aged together;
        each face's session comes from the cache."""
        photo = self.photo(src, what)
        photo.face(0, what)  # NoFaceError in words when there is none
        chosen = read_faces(faces, len(photo.faces))
        if chosen is None:
            chosen = [int(read_number(face_index, "face index", 0, integer=True, default=0))]
            photo.face(chosen[0], what)
        return GroupSession(photo, [self.session(src, False, i, what) for i in chosen])


def _file_key(src: Any) -> str | None:
    """A hash of a file's bytes (cheap next to decoding a large photo); ``None`` for anything but a readable file."""
    if not isinstance(src, (str, os.PathLike)):
        return None
    try:
        with open(src, "rb") as fh:
            return "file-" + hashlib.sha1(fh.read()).hexdigest()
    except OSError:
        return None  # Photo.load says what is wrong


def _trim(cache: OrderedDict, size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)
