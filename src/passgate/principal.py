"""The authenticated caller of one request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PrincipalKind = Literal["master", "virtual", "open"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request runs as, with everything enforcement needs, read from the key cache.

    ``token`` is the key's SHA-256 hash id (never the plaintext); it is None for the
    master key and for an open gateway.
    """

    kind: PrincipalKind
    token: str | None = None
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    end_user_id: str | None = None
    models: tuple[str, ...] = ()
    allowed_routes: tuple[str, ...] = ()
    # upstream deployments the key may reach (and pin with x-passgate-deployment); empty: all
    allowed_deployments: tuple[str, ...] = ()
    max_budget: float | None = None
    budget_duration: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        """Master key (or an open gateway): may call the management routes."""
        return self.kind != "virtual"


MASTER = Principal(kind="master")
OPEN = Principal(kind="open")
