"""The provider seam: what one provider declares, and the upstream it becomes at start-up.

A provider is a ``ProviderSpec`` subclass in its own module under ``providers/`` (listed in
``providers/registry.py``). It declares its route prefix, its settings' environment names,
how a caller presents a gateway key and how the real key goes upstream, which routes are
metered and how their usage is read, its price catalog, and its OpenTelemetry system name.
The relay, accounting, limits and observability know providers only through this class.

Usage is normalised (``passgate.exchange.Usage``) the same way for every provider:
``prompt_tokens`` counts every input token, those read from a cache (``cached_tokens``) and
written to one (``cache_write_tokens``) included; ``completion_tokens`` counts every output
token, reasoning (``reasoning_tokens``) included. A count the provider does not report stays
None: never a guess.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from passgate.errors import bad_request
from passgate.exchange import Metered, RequestInfo, Usage
from passgate.providers.shapes import model_named

__all__ = ["Metered", "Provider", "ProviderSpec", "split_base"]

# A path whose first segment is an API version (v1, v2, v1beta, ...).
_VERSIONED = re.compile(rb"/v\d+(?:(?:alpha|beta)\d*)?(?:/|\Z)")


class ProviderSpec(ABC):
    """One provider's route prefix: where it goes, how keys travel, how usage is read."""

    name: ClassVar[str]  # the spend row's provider; a metrics and log label
    prefix: ClassVar[bytes]  # the gateway route prefix, e.g. b"/anthropic"
    gen_ai_system: ClassVar[str]  # OpenTelemetry gen_ai.system
    default_base: ClassVar[str]  # the upstream when no base URL is set
    base_env: ClassVar[tuple[str, ...]]  # environment names of the base URL (first set wins)
    key_env: ClassVar[tuple[str, ...]]  # environment names of the provider key
    default_version: ClassVar[bytes] = b"v1"  # a path without a version gets this one
    # request headers besides ``authorization`` that may carry the caller's gateway key;
    # never forwarded upstream
    caller_key_headers: ClassVar[tuple[bytes, ...]] = ()
    # a query parameter carrying the caller's gateway key, taken out of the forwarded query
    caller_key_query: ClassVar[bytes | None] = None
    # response headers naming the upstream's request id when there is no x-request-id
    correlation_headers: ClassVar[tuple[bytes, ...]] = ()
    # JSON keys whose object carries usage: cut out of the tail of a body too large to parse
    usage_keys: ClassVar[tuple[bytes, ...]] = (b"usage",)
    # JSON keys naming the model in an answer (found in a stream event before parsing it)
    model_keys: ClassVar[tuple[bytes, ...]] = (b"model",)
    prices_file: ClassVar[str]  # the catalog's file name in passgate/providers/prices/
    # served even when neither a key nor a base URL is set (the seed's own provider)
    always_enabled: ClassVar[bool] = False
    # may have several deployments: the provider knows which of its routes create, name and
    # list the resources a deployment holds (files, jobs, ...), so calls about one go where it is
    pooled: ClassVar[bool] = False

    @abstractmethod
    def credential(self, key: str) -> tuple[str, str]:
        """The header that carries the real provider key upstream."""

    @abstractmethod
    def metered(self, method: str, api_path: str, info: RequestInfo) -> Metered | None:
        """How this call's usage is read, or None when the route reports no usage (cost 0).
        ``api_path`` is the provider API's own path, e.g. ``/v1/messages``."""

    def api_path(self, sub_path: bytes) -> bytes:
        """The path as the provider's API names it, from what follows the route prefix: a
        path that does not start with a version (``/v1``, ``/v1beta``) gets the default one."""
        if not _VERSIONED.match(sub_path):
            return b"/" + self.default_version + sub_path
        return sub_path

    def streamed(self, api_path: str, info: RequestInfo) -> bool:
        """Whether the call asks for a streamed answer: the body's ``"stream": true``, unless
        the provider decides it by the path (Gemini's ``:streamGenerateContent``)."""
        return info.stream

    def model_from_path(self, api_path: str) -> str | None:
        """The model a path names (as Gemini's ``/v1beta/models/M:generateContent``), else None.
        When it names one, it is the call's model (for a key's allowlist and the price),
        whatever model the request body names."""
        return None

    @abstractmethod
    def usage(self, obj: Any, metered: Metered, info: RequestInfo) -> Usage | None:
        """Usage from a parsed JSON response body; None when it reports none. Never raises."""

    @abstractmethod
    def stream_usage(self, obj: Any, so_far: Usage | None, metered: Metered) -> Usage | None:
        """The usage known after one parsed stream event (an SSE ``data:`` object or one line
        of a JSON-lines stream), given what was known before it; ``so_far`` when the event
        says nothing. Never raises."""

    def response_model(self, obj: Any) -> str | None:
        """The model a parsed response body or stream event names, else None."""
        return model_named(obj)

    # Stateful resources, for a provider with several deployments (``pooled``): a resource
    # made on one deployment (a file on one workspace) exists only there.

    def creates_resources(self, method: str, api_path: str) -> bool:
        """Whether a successful answer to this call may introduce resource ids (its body is
        then read before it is relayed, so a later call naming one finds its deployment)."""
        return False

    def created_resources(self, method: str, api_path: str, answer: Any) -> tuple[str, ...]:
        """The resource ids a successful answer (parsed JSON) to this call introduces."""
        return ()

    def path_resource(self, method: str, api_path: str) -> str | None:
        """The id of the resource a path names, else None."""
        return None

    def referenced_resources(self, method: str, api_path: str, body: Any) -> tuple[str, ...]:
        """The ids of resources a request body (parsed JSON) names."""
        return ()

    def lists_resources(self, method: str, api_path: str) -> bool:
        """Whether the call lists resources (it goes to the primary deployment)."""
        return False


@dataclass(frozen=True, slots=True)
class Provider:
    """An enabled provider at run time: its spec, origin, base path and credential.

    ``origin`` is fixed at start-up from settings; nothing in a request can change
    it, which is what keeps a caller from choosing the upstream host.
    """

    spec: ProviderSpec
    origin: str  # scheme://host[:port], no trailing slash
    base_path: bytes  # the base URL's own path, without a trailing version or "/"
    credential: tuple[str, str] | None  # header added upstream, e.g. Authorization

    @property
    def name(self) -> str:
        """The provider's name."""
        return self.spec.name

    @classmethod
    def of(cls, spec: ProviderSpec, base: str | None, key: str | None) -> Provider:
        """The provider ``spec`` describes at ``base`` (its default when None) with ``key``."""
        origin, base_path = split_base(base or spec.default_base, spec.default_version.decode())
        credential = None if key is None else spec.credential(key)
        return cls(spec=spec, origin=origin, base_path=base_path, credential=credential)

    def api_path(self, sub_path: bytes) -> bytes:
        """The path as the provider's API names it (``ProviderSpec.api_path``)."""
        return self.spec.api_path(sub_path)

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
