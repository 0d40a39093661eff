"""What the relay needs to know about an upstream provider."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from passgate.errors import bad_request

_VERSION = re.compile(rb"^v\d+$")


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

    def upstream_path(self, sub_path: bytes) -> bytes:
        """Map the path after the provider prefix onto the provider's base path.

        ``/v1/x`` and ``/x`` both become ``{base}/v1/x``; ``/v2/x`` stays ``/v2/x``.
        """
        first = sub_path[1:].split(b"/", 1)[0]
        if not _VERSION.match(first):
            sub_path = b"/" + self.default_version + sub_path
        return self.base_path + sub_path


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
