"""Overview (rollups over a UTC range), Logs (spend rows, never content) and Settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from passgate.api.spend import LogsQuery, build_filter
from passgate.errors import GatewayError
from passgate.storage import keys_repo
from passgate.storage.db import database_url, is_postgres
from passgate.ui.context import PageError, UiContext
from passgate.ui.paging import Paging, page_number
from passgate.ui.queries import Bucket, Window, key_by_id, log_page, log_row, overview

RANGES = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
LOG_PAGE_SIZE = 50
_FILTERS = ("key", "user_id", "team_id", "end_user", "model", "route")
_STATUS_CLASSES = {"2xx": 2, "3xx": 3, "4xx": 4, "5xx": 5}
_URL_SETTINGS = ("database_url", "redis_url", "webhook_url", "otlp_endpoint")


def _day(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise PageError(
            400, "Wrong date", "Dates are written YYYY-MM-DD, like 2026-01-31."
        ) from None


def window_of(request: Request, now: datetime) -> tuple[datetime, datetime, str]:
    """The chosen range as whole UTC hours: a preset (``range``) or ``from``/``to`` days."""
    q = request.query_params
    start, last = _day(q.get("from")), _day(q.get("to"))
    if start is not None or last is not None:
        end = (last or now.replace(hour=0, minute=0, second=0, microsecond=0)) + timedelta(days=1)
        start = start or end - timedelta(days=7)
        if start >= end:
            raise PageError(400, "Wrong range", "The range must start before it ends.")
        if end - start > timedelta(days=400):
            raise PageError(400, "Range too long", "Choose at most 400 days.")
        return start, end, "custom"
    preset = q.get("range", "24h")
    if preset not in RANGES:
        preset = "24h"
    if preset == "24h":
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    else:  # whole UTC days, today included: the daily rollups answer them
        end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return end - RANGES[preset], end, preset


def _public_url(value: str) -> str:
    # scheme, host and port only: no user, password, path or query (they may hold secrets)
    parts = urlsplit(value)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}" if host else f"{parts.scheme}:(local)"


def public_settings(ui: UiContext) -> list[tuple[str, str]]:
    """Every setting as (name, shown value): secrets only as set / not set, URLs without
    credentials, paths and queries."""
    rows: list[tuple[str, str]] = []
    for name, value in ui.settings:
        if isinstance(value, SecretStr):
            shown = "set" if value.get_secret_value() else "not set"
        elif name in _URL_SETTINGS:
            shown = "not set" if not value else _public_url(str(value))
        elif name == "pricing":
            shown = f"{len(value)} model price override(s)"
        elif name == "providers":
            for provider, upstream in sorted(value.items()):
                base = upstream.api_base
                rows.append((f"{provider}_api_base", "default" if not base else _public_url(base)))
                rows.append((f"{provider}_api_key", "set" if upstream.api_key else "not set"))
                for dep in upstream.deployments:
                    where = dep.api_base or base
                    rows.append(
                        (
                            f"{provider} deployment {dep.name}",
                            f"{'default' if not where else _public_url(where)}, "
                            f"weight {dep.weight:g}, key {'set' if dep.api_key else 'not set'}",
                        )
                    )
            continue
        else:
            shown = str(value)
        rows.append((name, shown))
    return rows


def _version() -> str:
    try:
        return version("passgate")
    except PackageNotFoundError:
        return "unknown"


class PageViews:
    """Overview, logs and settings."""

    def __init__(self, ui: UiContext) -> None:
        self._ui = ui

    async def overview(self, request: Request) -> Response:
        """GET /ui/: totals, a chart and the top spenders of a UTC range (rollups only)."""
        viewer = await self._ui.require(request)
        start, end, preset = window_of(request, self._ui.clock())
        bucket: Bucket = "hour" if end - start <= timedelta(days=2) else "day"
        if request.query_params.get("bucket") in ("hour", "day"):
            bucket = "hour" if request.query_params["bucket"] == "hour" else "day"
        if bucket == "hour" and end - start > timedelta(days=14):
            bucket = "day"
        token = None if viewer.is_admin else viewer.principal.token
        async with self._ui.sessions() as db:
            found = await overview(db, Window(start, end, token), bucket)
        peak = max((p["cost"] for p in found.series), default=0.0)
        peak_requests = max((p["requests"] for p in found.series), default=0.0)
        return self._ui.render(
            request,
            "overview.html",
            viewer,
            data=found,
            start=start,
            end=end,
            preset=preset,
            bucket=bucket,
            peak=peak,
            peak_requests=peak_requests,
            ranges=list(RANGES),
            query=request.query_params,
        )

    async def logs(self, request: Request) -> Response:
        """GET /ui/logs: spend rows, filtered and paged by the database; a row's detail panel
        with ``call``. A virtual key's filter is forced to itself by ``build_filter``."""
        viewer = await self._ui.require(request)
        q = request.query_params
        given: dict[str, Any] = {}
        for name in _FILTERS:
            value = (q.get(name) or "").strip()
            if value:
                given[name] = value
        start, end = _day(q.get("from")), _day(q.get("to"))
        if "key" in given:
            # named by alias or short id in the page, never by its secret (it would land in
            # URLs, browser history and access logs)
            given["key"] = await self._token_of(given["key"])
        try:
            query = LogsQuery.model_validate(given)
            flt = build_filter(query, viewer.principal, None)
        except GatewayError as exc:
            raise PageError(exc.status, "Wrong filter", exc.message) from None
        except ValueError:
            raise PageError(400, "Wrong filter", "A filter is too long.") from None
        flt = replace(
            flt,
            start=start,
            end=end + timedelta(days=1) if end else None,
            status_class=_STATUS_CLASSES.get(q.get("status", "")),
        )
        page = page_number(q.get("page"))
        call = (q.get("call") or "")[:128] or None
        async with self._ui.sessions() as db:
            rows, more = await log_page(db, flt, page, LOG_PAGE_SIZE)
            detail = await log_row(db, flt, call) if call else None
        return self._ui.render(
            request,
            "logs.html",
            viewer,
            rows=rows,
            detail=detail,
            call=call,
            query=q,
            filters=given,
            paging=Paging(page, LOG_PAGE_SIZE, None, len(rows), more),
        )

    async def _token_of(self, name: str) -> str:
        async with self._ui.sessions() as db:
            row = await keys_repo.get_by_alias(db, name[:256]) or await key_by_id(db, name[:64])
        if row is None:
            raise PageError(404, "No such key", "No key has this alias or id.")
        return row.token

    async def settings(self, request: Request) -> Response:
        """GET /ui/settings: the running configuration, secrets left out."""
        viewer = await self._ui.require(request, admin=True)
        settings = self._ui.settings
        url = database_url(settings)
        return self._ui.render(
            request,
            "settings.html",
            viewer,
            rows=public_settings(self._ui),
            version=_version(),
            database="PostgreSQL" if is_postgres(url) else "SQLite",
            redis="configured"
            if settings.redis_url
            else "not configured (limits are per instance)",
        )


def page_routes(ui: UiContext) -> list[Route]:
    """Overview, logs and settings routes."""
    v = PageViews(ui)
    return [
        Route("/", v.overview, methods=["GET"], name="ui:overview"),
        Route("/logs", v.logs, methods=["GET"], name="ui:logs"),
        Route("/settings", v.settings, methods=["GET"], name="ui:settings"),
    ]
