"""Metering: a usage reader for each metered answer, and what the call cost.

``Meter`` implements the relay's ``Metering`` protocol for every provider. Which routes
report usage, and what their usage means, is each provider's to say (``ProviderSpec``); the
relay sets ``Exchange.metered`` from it. Routes without usage (files, models, batch
management, ...) get no reader and cost 0; a model missing from its provider's catalog leaves
the cost null, is counted, and never fails the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from passgate.accounting.decoding import decoded
from passgate.accounting.jsonl import MEDIA_TYPES as _JSON_LINES
from passgate.accounting.jsonl import JsonLinesUsageReader
from passgate.accounting.pricing import Catalogs
from passgate.accounting.sse import SseUsageReader
from passgate.accounting.usage import FixedUsageReader, JsonUsageReader, Keys, Reading
from passgate.exchange import Exchange
from passgate.providers.base import ProviderSpec
from passgate.providers.registry import BUILTIN
from passgate.proxy.hooks import UsageReader

log = logging.getLogger("passgate.accounting")

_SSE = b"text/event-stream"
_JSON = (b"application/json", b"application/problem+json")
_WARNED_MAX = 256  # distinct unknown models logged; bounded so a flood cannot grow it


def _failed(ex: Exchange) -> bool:
    return ex.status == 0 or ex.status >= 400


class Meter:
    """Usage readers per call, and cost from the provider's pricing catalog."""

    def __init__(
        self,
        catalogs: Catalogs,
        specs: Iterable[ProviderSpec] = BUILTIN,
        *,
        json_limit: int = 1024 * 1024,
        sse_event_cap: int = 1024 * 1024,
        on_unpriced: Callable[[str | None], None] | None = None,
    ) -> None:
        self.catalogs = catalogs
        self.json_limit = json_limit
        self.sse_event_cap = sse_event_cap
        self.on_unpriced = on_unpriced
        self.unpriced_total = 0
        self._warned: set[tuple[str, str | None]] = set()
        self._specs = {spec.name: (spec, Keys(spec)) for spec in specs}

    def reader(
        self, ex: Exchange, content_type: bytes, content_encoding: bytes | None = None
    ) -> UsageReader | None:
        """A reader for this response, or None when it carries no usage; a compressed
        body is read through its inflated copy (``decoded``)."""
        reader = self._reader(ex, content_type)
        return decoded(reader, content_encoding) if content_encoding else reader

    def _reader(self, ex: Exchange, content_type: bytes) -> UsageReader | None:
        metered = ex.metered
        if metered is None or ex.status >= 400:
            return None
        if metered.fixed is not None:
            return FixedUsageReader(metered.fixed)
        found = self._specs.get(ex.provider)
        if found is None:
            return None
        spec, keys = found
        media = content_type.split(b";", 1)[0].strip().lower()
        if metered.json_lines or media in _JSON_LINES:
            return JsonLinesUsageReader(Reading(spec, keys, metered, ex.info), self.sse_event_cap)
        if media == _SSE:
            return SseUsageReader(Reading(spec, keys, metered, ex.info), self.sse_event_cap)
        if media in _JSON or media.endswith(b"+json"):
            return JsonUsageReader(Reading(spec, keys, metered, ex.info), self.json_limit)
        return None

    def settle(self, ex: Exchange) -> None:
        """Set ``ex.cost`` and ``ex.priced`` from the model, the usage and the catalog, once."""
        if ex.settled:
            return
        ex.settled = True
        ex.priced = True
        metered = ex.metered
        if metered is None or metered.free:
            ex.cost = 0.0
            return
        model = ex.model or ex.info.model
        price = self.catalogs.lookup(ex.provider, model, ex.deployment)
        if ex.usage is None:
            if _failed(ex) and not ex.interrupted:
                ex.cost = 0.0  # refused upstream: nothing consumed
            else:
                # the usage never arrived (a cut stream, an unreadable body): unknown
                ex.cost = 0.0 if price is not None and price.free else None
            return
        if price is None:
            ex.cost = None
            ex.priced = False
            self._unpriced(ex.provider, model)
            return
        cost = price.cost(ex.usage)
        ex.cost = cost if metered.discount == 1.0 else cost * metered.discount

    def _unpriced(self, provider: str, model: str | None) -> None:
        self.unpriced_total += 1
        if (provider, model) not in self._warned and len(self._warned) < _WARNED_MAX:
            self._warned.add((provider, model))
            log.warning(
                "no price for model %r on %s: its calls are logged with cost null "
                "(add it under 'pricing:' in the config file)",
                model,
                provider,
            )
        if self.on_unpriced is not None:
            try:
                self.on_unpriced(model)
            except Exception:
                log.exception("unpriced-model callback failed")
