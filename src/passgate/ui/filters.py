"""Jinja filters that format numbers, money and UTC times the same way on every page."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment

from passgate.ui.session import key_id


def money(value: Any) -> str:
    """A cost in USD: six decimals below a cent, four below a dollar, two above; a dash
    when unknown."""
    if value is None:
        return "—"
    amount = float(value)
    if abs(amount) < 0.01:
        return f"${amount:,.6f}"
    return f"${amount:,.4f}" if abs(amount) < 1 else f"${amount:,.2f}"


def number(value: Any) -> str:
    """A count with thousands separators; a dash when unknown."""
    if value is None:
        return "—"
    amount = float(value)
    return f"{amount:,.0f}" if amount == int(amount) else f"{amount:,.2f}"


def utc(value: Any, seconds: bool = False) -> str:
    """A time in UTC, labelled so; a dash when unknown."""
    if not isinstance(value, datetime):
        return "—"
    moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def with_page(query: Mapping[str, str], page: int) -> str:
    """The query string with another page number (the detail panel closed)."""
    values = {k: v for k, v in query.items() if k not in ("page", "call")}
    return urlencode({**values, "page": page})


def with_call(query: Mapping[str, str], call_id: str) -> str:
    """The query string with the detail panel of one call open."""
    return urlencode({**{k: v for k, v in query.items() if k != "call"}, "call": call_id})


def without_call(query: Mapping[str, str]) -> str:
    """The query string with the detail panel closed."""
    return urlencode({k: v for k, v in query.items() if k != "call"})


def install(env: Environment) -> None:
    """Register the filters and helpers on a template environment."""
    env.filters.update(money=money, number=number, utc=utc, key_id=key_id)
    env.globals.update(with_page=with_page, with_call=with_call, without_call=without_call)
