"""``GET /health/deployments``: each upstream deployment's state, for the master key.

It shows names, where each deployment is (scheme, host and port; never a key, never a
URL's credentials), weights, models, and whether it is healthy, cooling down (until when)
or dead (its key refused, since when), with the last error class. The state is the one
this worker holds: shared by every worker and instance when Redis is set, its own otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from passgate.api.admin_auth import AdminContext, require_admin
from passgate.api.responses import json_response
from passgate.proxy.deployments import HEALTHY, Deployment, DeploymentPool, Health


def _when(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _where(origin: str) -> str:
    parts = urlsplit(origin)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def deployment_state(dep: Deployment, health: Health) -> dict[str, Any]:
    """One deployment as the route shows it."""
    return {
        "name": dep.name,
        "api_base": _where(dep.provider.origin) + dep.provider.base_path.decode("latin-1"),
        "weight": dep.weight,
        "models": None if dep.models is None else sorted(dep.models),
        "primary": dep.primary,
        "state": health.state,
        "until": _when(health.until) if health.state != HEALTHY else None,
        "since": _when(health.since),
        "last_error": health.error,
    }


def deployment_routes(ctx: AdminContext, pools: Sequence[DeploymentPool]) -> list[Route]:
    """The deployments' health route."""

    async def deployments(request: Request) -> Response:
        await require_admin(request, ctx)
        return json_response(
            {
                "providers": {
                    pool.provider: [deployment_state(d, h) for d, h in pool.snapshot()]
                    for pool in pools
                }
            }
        )

    return [Route("/health/deployments", deployments, methods=["GET"])]
