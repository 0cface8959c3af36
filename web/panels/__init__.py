"""The page's panels, one module each: every panel builds its components (attributes of the panel) and holds its
handlers (methods that return or yield a dict of updates, always including the panel's status line). The wiring of
events to handlers is in one place, :meth:`web.page.Page.wire`."""

from web.panels.api import ApiPanel
from web.panels.group import GroupPanel
from web.panels.lifespan import LifespanPanel
from web.panels.mixing import MixingPanel
from web.panels.photo import PhotoPanel
from web.panels.strip import StripPanel
from web.panels.video import VideoPanel

__all__ = ["ApiPanel", "GroupPanel", "LifespanPanel", "MixingPanel", "PhotoPanel", "StripPanel", "VideoPanel"]
