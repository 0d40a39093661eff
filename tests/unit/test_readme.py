"""The README documents every setting and every route the gateway serves."""

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from passgate.api.app import build_app
from passgate.config import Settings, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    if field == "pricing":
        assert "`pricing`" in README
        return
    names = env_name(field).split(" / ")
    assert any(f"`{name}`" in README for name in names), f"{field} ({names}) not in README"
    assert f"`{field}`" in README, f"YAML key {field} not in README"


def test_every_admin_route_is_documented(tmp_path: Path) -> None:
    admin = build_app(Settings(data_dir=tmp_path)).admin
    assert isinstance(admin, Starlette)
    paths = [route.path for route in admin.routes if isinstance(route, Route)]
    assert "/key/generate" in paths
    for path in paths:
        assert f"{path}" in README, f"route {path} not in README"
