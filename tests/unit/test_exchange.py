"""Call ids: unique, fixed-width hex, ordered by creation (so the spend indexes append)."""

from __future__ import annotations

import re

from passgate.exchange import Exchange, new_call_id


def test_call_ids_are_unique_hex_and_ordered_by_creation() -> None:
    ids = [new_call_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", call_id) for call_id in ids)
    assert len(set(ids)) == len(ids)
    prefixes = [call_id[:16] for call_id in ids]
    assert prefixes == sorted(prefixes)


def test_each_exchange_gets_its_own_call_id() -> None:
    a, b = (Exchange("r", "POST", "/mistral/v1/x", "/v1/x", "mistral", 0.0, 0.0) for _ in "ab")
    assert a.call_id != b.call_id and a.call_id[:16] <= b.call_id[:16]
