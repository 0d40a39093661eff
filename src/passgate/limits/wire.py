"""The messages between a worker and the instance's limits process: one JSON array a line.

Worker to holder (``rid`` numbers a request; its reply starts with it)::

    ["a", rid, key, budgets, amount]   admit; key = [counter, rpm, tpm, parallel] or null,
                                       budgets = [[counter, max_budget, period], ...]
    ["s", rid, [[counter, spend, reset_at], ...]]   seed counters (the first seed wins)
    ["b", rid, counter, period]        a budget counter's state
    ["r", rid, counter]                a key's rate counters
    ["f", ticket, tokens, cost]        finish a ticket this connection holds (no reply)
    ["c", key, budgets, tokens, cost]  count tokens and cost only (no reply): a ticket of
                                       an earlier connection, or a call served unchecked

Holder to worker::

    [rid, "ok", ticket, amount, requests_used, tokens_used]    admitted
    [rid, reason, requests_used, tokens_used, retry_after, scope, spent, reserved]
    [rid, "seed", [positions of the budgets without a counter]]
    [rid, "ok"]                                                 seeded
    [rid, spent, reserved, reset_at] or [rid, null]             a budget's state
    [rid, requests, tokens, parallel]                           a key's rate counters

Money is in integer nano-dollars, as everywhere in ``limits``.
"""

from __future__ import annotations

from typing import Any

from passgate.limits.backend import BudgetScope, KeyLimits

Message = list[Any]


def key_fields(key: KeyLimits | None) -> list[Any] | None:
    """A key's limits as sent."""
    if key is None:
        return None
    return [key.counter, key.rpm, key.tpm, key.parallel]


def budget_fields(budgets: tuple[BudgetScope, ...]) -> list[list[Any]]:
    """Budget scopes as sent: only what the counters need (never a database id or label)."""
    return [[scope.counter, scope.max_budget, scope.period] for scope in budgets]


def key_of(fields: list[Any] | None) -> KeyLimits | None:
    """A key's limits as received."""
    if fields is None:
        return None
    counter, rpm, tpm, parallel = fields
    return KeyLimits(str(counter), _count(rpm), _count(tpm), _count(parallel))


def budgets_of(fields: list[list[Any]]) -> tuple[BudgetScope, ...]:
    """Budget scopes as received, named by their counters."""
    return tuple(
        BudgetScope(
            "key", "", counter, str(counter), int(most), None if period is None else float(period)
        )
        for counter, most, period in fields
    )


def _count(value: Any) -> int | None:
    return None if value is None else int(value)
