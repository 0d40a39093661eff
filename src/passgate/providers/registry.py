"""The built-in providers, and which of them a gateway serves.

A new provider is one module under ``providers/`` with a ``ProviderSpec`` subclass, its price
catalog in ``providers/prices/``, and one line in ``BUILTIN`` below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from passgate.providers.anthropic import AnthropicSpec
from passgate.providers.base import Provider, ProviderSpec
from passgate.providers.cohere import CohereSpec
from passgate.providers.gemini import GeminiSpec
from passgate.providers.mistral import MistralSpec
from passgate.providers.openai import OpenAIPassthroughSpec, OpenAISpec
from passgate.providers.openai_compatible import SECTION, VllmSpec, compatible_spec

BUILTIN: tuple[ProviderSpec, ...] = (
    MistralSpec(),
    CohereSpec(),
    GeminiSpec(),
    AnthropicSpec(),
    OpenAISpec(),
    OpenAIPassthroughSpec(),
    VllmSpec(),
)

# the config file's section declaring further OpenAI-compatible servers by name
COMPATIBLE_SECTION = SECTION
# the first path segments of the gateway's own routes, which no provider prefix may take
RESERVED_PREFIXES = frozenset(
    {"/customer", "/end_user", "/health", "/key", "/metrics", "/spend", "/team", "/ui", "/user"}
)
_PREFIX = re.compile(r"/[a-z0-9][a-z0-9_-]{0,62}")


def with_servers(servers: Iterable[tuple[str, str, str, str]]) -> tuple[ProviderSpec, ...]:
    """The built-in specs, then one for each named OpenAI-compatible server given as
    (name, prefix, base URL, credential header)."""
    return BUILTIN + tuple(compatible_spec(*server) for server in servers)


def prefix_problem(prefix: str, taken: set[str]) -> str | None:
    """Why ``prefix`` cannot be a provider's route prefix, or None when it can: one path
    segment, not another provider's and not one of the gateway's own routes."""
    if not _PREFIX.fullmatch(prefix):
        return f"prefix {prefix!r} must be one path segment of a-z, 0-9, '_' or '-' after '/'"
    if prefix in RESERVED_PREFIXES:
        return f"prefix {prefix!r} is one of the gateway's own routes"
    if prefix in taken or any(prefix.encode() == spec.prefix for spec in BUILTIN):
        return f"prefix {prefix!r} is already a provider's"
    return None


def spec_named(name: str, specs: tuple[ProviderSpec, ...] = BUILTIN) -> ProviderSpec | None:
    """The spec of the provider called ``name``, if there is one."""
    for spec in specs:
        if spec.name == name:
            return spec
    return None


def enabled(
    upstreams: Mapping[str, tuple[str | None, str | None]],
    specs: tuple[ProviderSpec, ...] = BUILTIN,
) -> list[Provider]:
    """The providers a gateway serves, given each one's (base URL, key) from the settings:
    those with either set, and the ones served in any case."""
    found = []
    for spec in specs:
        base, key = upstreams.get(spec.name, (None, None))
        if spec.always_enabled or base is not None or key is not None:
            found.append(Provider.of(spec, base, key))
    return found
