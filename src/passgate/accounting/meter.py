"""Metering: which responses carry usage, how to read it, and what the call cost.

``Meter`` implements the relay's ``Metering`` protocol. Routes without usage
(files, models, batch management, ...) get no reader and cost 0; a model missing
from the catalog leaves the cost null, is counted, and never fails the call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from passgate.accounting.decoding import decoded
from passgate.accounting.pricing import Catalog
from passgate.accounting.sse import SseUsageReader
from passgate.accounting.usage import FixedUsageReader, JsonUsageReader
from passgate.exchange import Exchange, Usage
from passgate.proxy.hooks import UsageReader

log = logging.getLogger("passgate.accounting")

TOKENS = "tokens"
CONVERSATION = "conversation"
OCR = "ocr"
TRANSCRIPTION = "transcription"
SPEECH = "speech"

_FAMILIES = {
    "/v1/chat/completions": TOKENS,
    "/v1/fim/completions": TOKENS,
    "/v1/agents/completions": TOKENS,
    "/v1/embeddings": TOKENS,
    "/v1/moderations": TOKENS,
    "/v1/chat/moderations": TOKENS,
    "/v1/classifications": TOKENS,
    "/v1/chat/classifications": TOKENS,
    "/v1/responses": TOKENS,
    "/v1/ocr": OCR,
    "/v1/audio/transcriptions": TRANSCRIPTION,
    "/v1/audio/speech": SPEECH,
}
# start, append and restart; the GET routes under it return stored objects, not usage
_CONVERSATION = re.compile(r"/v1/conversations(?:/[^/]+(?:/restart)?)?")
_SSE = b"text/event-stream"
_JSON = (b"application/json", b"application/problem+json")
_WARNED_MAX = 256  # distinct unknown models logged; bounded so a flood cannot grow it


def route_family(method: str, upstream_path: str) -> str | None:
    """The usage family of a pass-through call, or None when it reports no usage."""
    if method != "POST":
        return None
    path = upstream_path.rstrip("/")
    family = _FAMILIES.get(path)
    if family is None and _CONVERSATION.fullmatch(path):
        family = CONVERSATION
    return family


def _failed(ex: Exchange) -> bool:
    return ex.status == 0 or ex.status >= 400


class Meter:
    """Usage readers per route, and cost from the pricing catalog."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        json_limit: int = 1024 * 1024,
        sse_event_cap: int = 1024 * 1024,
        on_unpriced: Callable[[str | None], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.json_limit = json_limit
        self.sse_event_cap = sse_event_cap
        self.on_unpriced = on_unpriced
        self.unpriced_total = 0
        self._warned: set[str | None] = set()

    def reader(
        self, ex: Exchange, content_type: bytes, content_encoding: bytes | None = None
    ) -> UsageReader | None:
        """A reader for this response, or None when it carries no usage; a compressed
        body is read through its inflated copy (``decoded``)."""
        reader = self._reader(ex, content_type)
        return decoded(reader, content_encoding) if content_encoding else reader

    def _reader(self, ex: Exchange, content_type: bytes) -> UsageReader | None:
        if ex.status >= 400:
            return None
        family = route_family(ex.method, ex.api_path)
        if family is None:
            return None
        if family == SPEECH:
            chars = ex.info.input_chars
            return FixedUsageReader(None if chars is None else Usage(characters=chars))
        annotated = family == OCR and ex.info.annotations
        media = content_type.split(b";", 1)[0].strip().lower()
        if media == _SSE:
            return SseUsageReader(annotated, self.sse_event_cap)
        if media in _JSON or media.endswith(b"+json"):
            return JsonUsageReader(annotated, self.json_limit)
        return None

    def settle(self, ex: Exchange) -> None:
        """Set ``ex.cost`` and ``ex.priced`` from the model, the usage and the catalog."""
        ex.priced = True
        if route_family(ex.method, ex.api_path) is None:
            ex.cost = 0.0
            return
        model = ex.model or ex.info.model
        price = self.catalog.lookup(model)
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
            self._unpriced(model)
            return
        ex.cost = price.cost(ex.usage)

    def _unpriced(self, model: str | None) -> None:
        self.unpriced_total += 1
        if model not in self._warned and len(self._warned) < _WARNED_MAX:
            self._warned.add(model)
            log.warning(
                "no price for model %r: its calls are logged with cost null "
                "(add it under 'pricing:' in the config file)",
                model,
            )
        if self.on_unpriced is not None:
            try:
                self.on_unpriced(model)
            except Exception:
                log.exception("unpriced-model callback failed")
