"""The cost reserved before a call is forwarded, so concurrent calls cannot overspend.

With ``budget_estimate_usd`` set, every call reserves that flat amount. Otherwise
the estimate is the most the call can cost, as far as the gateway can tell before
forwarding it::

    ceil(request body bytes / 4) x input price + output allowance x output price

where the output allowance is the request's ``max_tokens`` or, when it sets none,
the model's ``max_output_tokens`` from the pricing catalog capped by
``budget_output_tokens`` (that setting alone when the catalog names no maximum).
A model the catalog does not price reserves nothing. The counters never reserve
more than a budget has unreserved (see ``backend``), and the real cost replaces
the reservation when the call ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from passgate.accounting.pricing import Price
from passgate.exchange import Exchange
from passgate.limits.backend import to_nano

PriceLookup = Callable[[str, str | None], Price | None]  # (provider, model) -> its price

BYTES_PER_TOKEN = 4
DEFAULT_OUTPUT_TOKENS = 4096


class Estimator:
    """Nano-dollars to reserve for one call."""

    def __init__(
        self,
        lookup: PriceLookup,
        flat_usd: float = 0.0,
        output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> None:
        self._lookup = lookup
        self._flat = to_nano(flat_usd)
        self._output_cap = output_tokens

    def __call__(self, ex: Exchange) -> int:
        """The reservation for this call, in nano-dollars."""
        if self._flat > 0:
            return self._flat
        price = self._lookup(ex.provider, ex.model or ex.info.model)
        if price is None:
            return 0
        input_tokens = math.ceil(ex.bytes_in / BYTES_PER_TOKEN)
        output_tokens = ex.info.max_tokens
        if output_tokens is None:
            most = price.max_output_tokens
            output_tokens = self._output_cap if most is None else min(most, self._output_cap)
        return to_nano(
            input_tokens * price.input_per_token + max(output_tokens, 0) * price.output_per_token
        )
