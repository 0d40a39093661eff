"""The built-in providers, and which of them a gateway serves.

A new provider is one module under ``providers/`` with a ``ProviderSpec`` subclass, its price
catalog in ``providers/prices/``, and one line in ``BUILTIN`` below.
"""

from __future__ import annotations

from collections.abc import Mapping

from passgate.providers.base import Provider, ProviderSpec
from passgate.providers.mistral import MistralSpec
from passgate.providers.openai import OpenAISpec
from passgate.providers.openai_compatible import VllmSpec

BUILTIN: tuple[ProviderSpec, ...] = (MistralSpec(), OpenAISpec(), VllmSpec())


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
