"""Face sessions: one photo's whole flow, from the uploaded file to aged, pasted-back and measured results.

* :class:`Photo` (:mod:`~sam.session.photo`): a photo loaded safely and its faces, found once, best first;
* :class:`FaceSession` (:mod:`~sam.session.face`): one chosen face of a photo through the whole flow;
* :class:`GroupSession` (:mod:`~sam.session.group`): several faces of one photo aged together;
* :class:`FaceMeasures` (:mod:`~sam.session.measures`): apparent age and identity, optional;
* :class:`SessionCache` (:mod:`~sam.session.cache`): the app's small LRU of photos and sessions;
* :class:`Background` and :func:`warm_up` (:mod:`~sam.session.background`): warm-ups in background threads.

The web page and the command line both go through here; request values are checked by :mod:`sam.requests`.
"""

from sam.session.background import Background, warm_up
from sam.session.cache import SessionCache
from sam.session.face import MAX_FRAMES_BETWEEN, PREVIEW_SIZE, FaceSession, lifespan_frames
from sam.session.group import GROUP_VIDEO_SIDE, GroupSession
from sam.session.measures import FaceMeasures
from sam.session.photo import MAX_FACES, WORKING_SIDE, Photo

__all__ = ["Background", "FaceMeasures", "FaceSession", "GroupSession", "Photo", "SessionCache", "warm_up",
           "lifespan_frames", "GROUP_VIDEO_SIDE", "MAX_FACES", "MAX_FRAMES_BETWEEN", "PREVIEW_SIZE", "WORKING_SIDE"]


def __getattr__(name: str):  # names that moved to sam.requests / sam.cancel (sam.old_paths)
    from sam.old_paths import moved_name

    return moved_name(__name__, name)
