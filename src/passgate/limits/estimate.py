"""The cost reserved before a call is forwarded, so concurrent calls cannot overspend.

With ``budget_estimate_usd`` set, every call reserves that flat amount. Otherwise
the estimate is the most the call can cost under its own request, as far as the
gateway can tell before forwarding it::

    ceil(request body bytes / 4) x input price + max_tokens x output price

using the pricing catalog. A model the catalog does not price reserves nothing,
and so does the output of a call without ``max_tokens``; the real cost replaces
the reservation when the call ends either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from passgate.accounting.pricing import Price
from passgate.exchange import Exchange
from passgate.limits.backend import to_nano

PriceLookup = Callable[[str | None], Price | None]

BYTES_PER_TOKEN = 4


class Estimator:
    """Nano-dollars to reserve for one call."""

    def __init__(self, lookup: PriceLookup, flat_usd: float = 0.0) -> None:
        self._lookup = lookup
        self._flat = to_nano(flat_usd)

    def __call__(self, ex: Exchange) -> int:
        """The reservation for this call, in nano-dollars."""
        if self._flat > 0:
            return self._flat
        price = self._lookup(ex.model or ex.info.model)
        if price is None:
            return 0
        input_tokens = math.ceil(ex.bytes_in / BYTES_PER_TOKEN)
        output_tokens = ex.info.max_tokens or 0
        return to_nano(
            input_tokens * price.input_per_token + output_tokens * price.output_per_token
        )
