"""What every panel of the page is: its components (built by :meth:`Panel.build`, kept as attributes) and its
handlers (methods), over the page's :class:`~web.service.AgeApp`. Other panels' components are reached through
``self.page`` (the group panel updates the group choice the photo panel builds under its face picker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from web.page import Page

__all__ = ["Panel"]


class Panel:
    """One panel of the page."""

    def __init__(self, page: Page):
        self.page = page
        self.app = page.app

    def build(self) -> None:
        """Make the panel's components, in the page's layout context."""
        raise NotImplementedError
