"""What the relay needs to know about an upstream provider."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from passgate.errors import bad_request

# A path whose first segment is an API version (v1, v2, ...).
_VERSIONED = re.compile(rb"/v\d+(?:/|\Z)")


@dataclass(frozen=True, slots=True)
class Provider:
    """An upstream: its origin, base path, credential and default API version.

    ``origin`` is fixed at start-up from settings; nothing in a request can change
    it, which is what keeps a caller from choosing the upstream host.
    """

    name: str
    origin: str  # scheme://host[:port], no trailing slash
    base_path: bytes  # the base URL's own path, without a trailing "/v1" or "/"
    credential: tuple[str, str] | None  # header added upstream, e.g. Authorization
    default_version: bytes = b"v1"

    def api_path(self, sub_path: bytes) -> bytes:
        """The path as the provider's API names it: ``/x`` becomes ``/v1/x``, ``/v2/x`` stays."""
        if not _VERSIONED.match(sub_path):
            return b"/" + self.default_version + sub_path
        return sub_path

    def upstream_path(self, sub_path: bytes) -> bytes:
        """The API path joined onto the base URL's own path (never replacing it)."""
        return self.base_path + self.api_path(sub_path)


def split_base(url: str, version: str = "v1") -> tuple[str, bytes]:
    """Split a base URL into origin and path, dropping a trailing ``/{version}``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request(f"invalid provider base URL scheme or host: {parts.scheme!r}")
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if path.endswith("/" + version):
        path = path[: -len(version) - 1]
    return origin, path.encode("ascii")
