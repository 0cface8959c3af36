"""Who a request comes from: its visitor (a page, or a client's session) and its address, for the rules that keep
one client from holding what many visitors share (the line of videos, the queue, the upload space).

The address is the connection's peer; behind a reverse proxy every request would share the proxy's, so there the
last ``X-Forwarded-For`` entry (the one the proxy adds) is used instead: on Hugging Face Spaces (``SPACE_ID`` set)
and wherever the operator says so (``SAM_TRUSTED_PROXY=1``). Elsewhere that header is the client's own word and is
not read.
"""

from __future__ import annotations

from typing import Any

from sam import settings
from web import glue

__all__ = ["address_of", "behind_proxy"]


def behind_proxy() -> bool:
    """Whether requests reach the app through a proxy that names the client in ``X-Forwarded-For``."""
    return bool(settings.text("SPACE_ID")) or settings.flag("SAM_TRUSTED_PROXY")


def address_of(request: Any) -> str | None:
    """The address a request comes from (``None``: unknown)."""
    return glue.client_address(request, behind_proxy())
