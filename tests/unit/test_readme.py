"""README.md and docs/*.md document every setting and every route the gateway serves."""

import re
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from passgate.app import build_app
from passgate.config import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOC_PAGES]
DOCS = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)\s]*)?\)")


REFERENCE = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_reference_table(field: str) -> None:
    # config-file sections, no environment name
    if field in ("pricing", "providers", "compatible_servers"):
        assert f"`{field}`" in REFERENCE
        return
    names = env_name(field).split(" / ")
    rows = [line for line in REFERENCE.splitlines() if line.startswith("| `")]
    row = next((line for line in rows if any(f"`{name}`" in line for name in names)), None)
    assert row is not None, f"{field} ({names}) not in docs/configuration.md"
    assert f"`{field}`" in row, f"YAML key {field} not in its row of docs/configuration.md"


def test_every_admin_route_is_documented(tmp_path: Path) -> None:
    admin = build_app(Settings(data_dir=tmp_path)).admin
    assert isinstance(admin, Starlette)
    paths = [route.path for route in admin.routes if isinstance(route, Route)]
    assert "/key/generate" in paths
    for path in paths:
        assert f"`{path}" in DOCS or f" {path}" in DOCS, f"route {path} not in the docs"


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda page: page.name)
def test_links_between_docs_lead_to_files(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (page.parent / target).resolve().is_file(), f"{page.name} links to {target}"
