"""One builder for the ``Exchange`` of a finished or refused call, shared by the unit tests."""

from __future__ import annotations

from passgate.exchange import Exchange

CHAT = "/mistral/v1/chat/completions"


def exchange(
    route: str = CHAT,
    *,
    request_id: str = "req-1",
    method: str = "POST",
    start_time: float = 1_700_000_000.0,
    start: float = 10.0,
    **fields: object,
) -> Exchange:
    """A Mistral call to ``route`` (sent upstream without ``/mistral``), ``fields`` set on it."""
    ex = Exchange(
        request_id=request_id,
        method=method,
        route=route,
        upstream_path=route.removeprefix("/mistral"),
        provider="mistral",
        start_time=start_time,
        start=start,
    )
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex
