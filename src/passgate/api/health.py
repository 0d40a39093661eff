"""Health routes (LiteLLM's names): no auth, never touch the upstream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]


def health_routes(checks: dict[str, ReadinessCheck]) -> list[Route]:
    """``/health``, ``/health/liveliness`` (alias ``/health/liveness``), ``/health/readiness``."""

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    async def ready(request: Request) -> JSONResponse:
        results: dict[str, str] = {}
        healthy = True
        for name, check in checks.items():
            try:
                outcome = await check()
            except Exception as exc:  # a failing dependency makes us unready, not broken
                outcome = {"status": "unhealthy", "error": type(exc).__name__}
            results[name] = outcome.get("status", "unknown")
            healthy = healthy and outcome.get("status") == "healthy"
        body = {"status": "healthy" if healthy else "unhealthy", **results}
        return JSONResponse(body, status_code=200 if healthy else 503)

    return [
        Route("/health", ready, methods=["GET"]),
        Route("/health/liveliness", live, methods=["GET"]),
        Route("/health/liveness", live, methods=["GET"]),
        Route("/health/readiness", ready, methods=["GET"]),
    ]
