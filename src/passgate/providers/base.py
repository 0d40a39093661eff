"""What the relay needs to know about an upstream provider."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from passgate.errors import bad_request
from passgate.exchange import RequestInfo, Usage

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


@dataclass(frozen=True, slots=True)
class Metered:
    """How the usage of one metered call is read and priced."""

    kind: str = "tokens"  # the provider's own label, passed back to its usage functions
    discount: float = 1.0  # multiplier on the cost (a batch API at half price: 0.5)
    free: bool = False  # metered but never charged (count_tokens): cost 0.0
    fixed: Usage | None = None  # usage known from the request alone; body not read


class ProviderSpec(ABC):
    """One provider route prefix: where it goes, how its key travels, how its usage is read."""

    name: str
    prefix: bytes
    gen_ai_system: str
    default_base: str
    base_env: tuple[str, ...]
    key_env: tuple[str, ...]
    default_version: bytes
    caller_key_headers: tuple[bytes, ...]
    caller_key_query: bytes | None
    correlation_headers: tuple[bytes, ...]
    usage_keys: tuple[bytes, ...]
    prices_file: str

    @abstractmethod
    def credential(self, key: str) -> tuple[str, str]:
        """The header that carries the real provider key upstream."""

    @abstractmethod
    def metered(self, method: str, api_path: str, info: RequestInfo) -> Metered | None:
        """How this call's usage is read, or None when the route reports no usage."""

    @abstractmethod
    def model_from_path(self, api_path: str) -> str | None:
        """The model a path names, else None."""

    @abstractmethod
    def usage(self, obj: Any, metered: Metered, info: RequestInfo) -> Usage | None:
        """Usage from a parsed JSON response body; None when it reports none. Never raises."""

    @abstractmethod
    def stream_usage(self, obj: Any, so_far: Usage | None, metered: Metered) -> Usage | None:
        """The usage known after one parsed stream event, given what was known before it."""

    @abstractmethod
    def response_model(self, obj: Any) -> str | None:
        """The model a parsed response body or stream event names, else None."""
