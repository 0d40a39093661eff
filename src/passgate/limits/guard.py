"""The limits as a pipeline stage: admit before forwarding, settle after the last byte.

``LimitsGuard`` takes part in two phases of the pipeline. ``admit`` checks the
key's rpm, tpm and parallel limits and reserves the call's estimated cost on
every budget it counts against (key, user, team, end user), all in one atomic
step, holding the ticket in its own slot of the call; ``cleanup`` frees the parallel
slot, counts the tokens the upstream reported, and replaces the reservation by the
real cost. The relay runs ``cleanup`` for every call, refused, failed or interrupted
ones included, before any best-effort observer.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from typing import Literal

from passgate.errors import GatewayError, forbidden, too_many, unavailable
from passgate.exchange import Exchange, Slot
from passgate.limits.backend import (
    Admission,
    AdmitRequest,
    BudgetScope,
    Counters,
    KeyLimits,
    LimitsUnavailable,
    Ticket,
    to_nano,
    to_usd,
)
from passgate.limits.directory import BudgetDirectory, key_counter
from passgate.limits.estimate import Estimator

log = logging.getLogger("passgate.limits")

FailMode = Literal["open", "closed"]
# the call's ticket: its parallel slot and budget reservations, from admit to cleanup
TICKET: Slot[Ticket] = Slot("limits ticket")
BypassCallback = Callable[[str], None]


class LimitsGuard:
    """Rate limits and budgets around each forwarded call."""

    def __init__(
        self,
        counters: Counters,
        directory: BudgetDirectory,
        estimator: Estimator,
        fail_mode: FailMode = "open",
        on_bypass: BypassCallback | None = None,
    ) -> None:
        self._counters = counters
        self._directory = directory
        self._estimate = estimator
        self._fail_mode = fail_mode
        self._on_bypass = on_bypass

    async def admit(self, ex: Exchange) -> None:
        """Refuse with 429 when a limit or budget is spent; otherwise hold a ticket on ``ex``."""
        principal = ex.principal
        key = None
        if (
            principal is not None
            and principal.token
            and (
                principal.rpm_limit is not None
                or principal.tpm_limit is not None
                or principal.max_parallel_requests is not None
            )
        ):
            key = KeyLimits(
                key_counter(principal.token),
                principal.rpm_limit,
                principal.tpm_limit,
                principal.max_parallel_requests,
            )
        budgets: tuple[BudgetScope, ...] = ()
        try:
            if ex.end_user and await self._directory.end_user_blocked(ex.end_user):
                raise forbidden(
                    f"End user '{ex.end_user}' is blocked from making calls.", "end_user_blocked"
                )
            budgets = await self._directory.scopes(principal, ex.end_user)
            if key is None and not budgets:
                return
            amount = self._estimate(ex) if budgets else 0
            admission = await self._counters.admit(AdmitRequest(key, budgets, amount))
        except LimitsUnavailable as exc:
            self._unavailable(exc)
            bypass = _bypass_ticket(key, budgets)
            if bypass is not None:
                TICKET.put(ex, bypass)
            return
        if admission.ticket is None:
            raise _refusal(admission, key)
        TICKET.put(ex, admission.ticket)

    async def cleanup(self, ex: Exchange) -> None:
        """Give back the call's slot and reservation, and count what it really used."""
        ticket = TICKET.take(ex)
        if ticket is None:
            return
        tokens = ex.usage.tokens() if ex.usage is not None else 0
        cost = to_nano(ex.cost) if ex.cost else 0
        try:
            await self._counters.finish(ticket, tokens, cost)
        except LimitsUnavailable:
            log.warning("call %s settled later: the limit counters are unreachable", ex.request_id)

    def _unavailable(self, exc: LimitsUnavailable) -> None:
        if self._fail_mode == "closed":
            raise unavailable(
                f"rate limits and budgets cannot be checked ({exc}); "
                "the gateway is configured to refuse calls until they can",
                code="limits_unavailable",
            ) from exc
        if self._on_bypass is not None:
            self._on_bypass(str(exc))
        log.warning("limits not enforced for this call: %s (redis_fail_mode=open)", exc)


def _bypass_ticket(key: KeyLimits | None, budgets: tuple[BudgetScope, ...]) -> Ticket | None:
    """A ticket holding nothing, so a call served without limits still counts its tokens
    and cost once the counters are back (``finish`` is queued until then)."""
    if key is None and not budgets:
        return None
    tokens_only = None if key is None else KeyLimits(key.counter, tpm=key.tpm)
    return Ticket("bypass-" + secrets.token_hex(8), tokens_only, budgets, 0)


def _refusal(admission: Admission, key: KeyLimits | None) -> GatewayError:
    if admission.reason == "budget" and admission.scope is not None:
        scope = admission.scope
        spent, reserved = to_usd(admission.spent), to_usd(admission.reserved)
        message = (
            f"Budget exceeded for {scope.label}: spent ${spent:.6g}"
            + (f" (+${reserved:.6g} reserved by calls in flight)" if admission.reserved else "")
            + f" of max_budget ${to_usd(scope.max_budget):.6g}"
        )
        if scope.period is None:
            return too_many(message, "budget_exceeded")
        wait = max(1, math.ceil(admission.retry_after))
        message += f"; the budget resets in {wait} s"
        return too_many(message, "budget_exceeded", ((b"retry-after", str(wait).encode()),))
    retry = max(1, math.ceil(admission.retry_after))
    headers = [(b"retry-after", str(retry).encode())]
    if key is not None and key.rpm is not None:
        used = admission.requests_used or 0
        headers += [
            (b"x-ratelimit-limit-requests", str(key.rpm).encode()),
            (b"x-ratelimit-remaining-requests", str(max(0, key.rpm - used)).encode()),
        ]
    if key is not None and key.tpm is not None:
        used = admission.tokens_used or 0
        headers += [
            (b"x-ratelimit-limit-tokens", str(key.tpm).encode()),
            (b"x-ratelimit-remaining-tokens", str(max(0, key.tpm - used)).encode()),
        ]
    if admission.reason == "rpm":
        what = f"{key.rpm if key else 0} requests per minute"
    elif admission.reason == "tpm":
        what = f"{key.tpm if key else 0} tokens per minute"
    else:
        what = f"{key.parallel if key else 0} parallel requests"
    return too_many(
        f"Rate limit exceeded for this key: {what}; retry after {retry} s",
        "rate_limit_exceeded",
        tuple(headers),
    )
