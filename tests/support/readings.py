"""What a usage reader needs of a call, for readers tested on their own (Mistral's shapes)."""

from __future__ import annotations

from passgate.accounting.usage import Keys, Reading
from passgate.exchange import Metered, RequestInfo
from passgate.providers.mistral import OCR, TOKENS, MistralSpec

SPEC = MistralSpec()
KEYS = Keys(SPEC)


def mistral_reading(annotated: bool = False, metered: Metered | None = None) -> Reading:
    """A Mistral call's reading: OCR with annotations when ``annotated``, else tokens."""
    chosen = metered or (OCR if annotated else TOKENS)
    return Reading(SPEC, KEYS, chosen, RequestInfo(annotations=annotated))
