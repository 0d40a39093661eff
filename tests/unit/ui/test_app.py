"""The UI's place in the app factory: mounted at /ui unless the ``ui`` setting is off."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

from passgate.app import build_app
from passgate.config import Settings


def mounts(settings: Settings) -> list[str]:
    admin = build_app(settings).admin
    assert isinstance(admin, Starlette)
    return [route.path for route in admin.routes if isinstance(route, Mount)]


def test_the_ui_is_mounted_unless_turned_off(tmp_path: Path) -> None:
    assert mounts(Settings(data_dir=tmp_path)) == ["/ui"]
    assert mounts(Settings(data_dir=tmp_path, ui=False)) == []


async def test_ui_without_a_slash_goes_to_the_overview(tmp_path: Path) -> None:
    gateway = build_app(Settings(data_dir=tmp_path, master_key=SecretStr("sk-master-12345")))
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ui",
        "raw_path": b"/ui",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"gateway")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await gateway.admin(scope, receive, send)
    assert sent[0]["status"] in (301, 307, 308)
    assert (b"location", b"http://gateway/ui/") in sent[0]["headers"]
