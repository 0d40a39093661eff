"""The web UI's protections, against a real ``passgate`` process: login, cookies, CSRF,
escaping, a virtual key's view limited to its own data, headers, and no secret rendered."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from passgate.ui.filters import money
from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.ui_client import UiClient

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
CHAT = "/mistral/v1/chat/completions"
NASTY = '<script>alert("x")</script>\'"é漢'
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
PAGES = [
    "/ui/",
    "/ui/keys",
    "/ui/keys/new",
    "/ui/users",
    "/ui/teams",
    "/ui/end-users",
    "/ui/logs",
    "/ui/settings",
]


def env(upstream: FakeMistral, **extra: str) -> dict[str, str]:
    return {
        "MISTRAL_API_BASE": upstream.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_SPEND_FLUSH_INTERVAL": "0.05",
        "PASSGATE_UI_LOGIN_ATTEMPTS": "1000",
        **extra,
    }


@pytest.fixture(scope="module")
def gw(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> GatewayProcess:
    return start_gateway(env(fake_upstream))


def api(gw: GatewayProcess, method: str, path: str, body: Any = None) -> Any:
    reply = request(gw.url, method, path, orjson.dumps(body) if body is not None else None, ADMIN)
    assert reply.status == 200, reply.body
    return reply.json()


def new_key(gw: GatewayProcess, **fields: Any) -> dict[str, Any]:
    found: dict[str, Any] = api(gw, "POST", "/key/generate", fields)
    return found


def call(gw: GatewayProcess, secret: str, model: str = "mistral-small-latest", **extra: Any) -> int:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], **extra})
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    return request(gw.url, "POST", CHAT, body, headers).status


def wait_for_rows(gw: GatewayProcess, count: int, **filters: str) -> list[dict[str, Any]]:
    query = urlencode(filters)
    deadline = time.monotonic() + 20
    while True:
        rows: list[dict[str, Any]] = api(gw, "GET", f"/spend/logs?{query}")["data"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.fixture
def admin(gw: GatewayProcess) -> Iterator[UiClient]:
    client = UiClient(gw.url)
    assert client.login(MASTER_KEY).status == 303
    yield client


def short_id(token: str) -> str:
    return token[:16]


def test_every_page_needs_a_login(gw: GatewayProcess) -> None:
    client = UiClient(gw.url)
    for path in PAGES:
        page = client.get(path)
        assert page.status == 303 and page.location and page.location.endswith("/ui/login"), path
    key = new_key(gw)
    page = client.post(f"/ui/keys/{short_id(key['token'])}/block", {"csrf": "x"})
    assert page.status == 303
    assert api(gw, "GET", f"/key/info?key={key['token']}")["info"]["blocked"] is False


def test_session_cookie_is_httponly_strict_and_scoped(gw: GatewayProcess) -> None:
    client = UiClient(gw.url)
    page = client.login(MASTER_KEY)
    assert page.status == 303
    cookies = page.headers.get_all("set-cookie") or []
    session = next(c for c in cookies if c.startswith("passgate_ui="))
    attributes = [part.strip().lower() for part in session.split(";")]
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/ui" in attributes
    assert "secure" not in attributes  # plain http on loopback, ui_secure_cookies off
    assert MASTER_KEY not in session


def test_secure_cookies_setting(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> None:
    gw = start_gateway(env(fake_upstream, PASSGATE_UI_SECURE_COOKIES="true"))
    client = UiClient(gw.url)
    form = client.get("/ui/login")
    assert "secure" in [p.strip().lower() for p in form.headers["set-cookie"].split(";")]


def test_pages_have_a_csp_and_no_inline_script(admin: UiClient) -> None:
    for path in PAGES:
        page = admin.get(path)
        assert page.status == 200, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        assert not INLINE_SCRIPT.search(page.text), path
        assert not EVENT_ATTRIBUTE.search(page.text), path


def test_a_wrong_key_is_refused_and_logins_are_throttled(
    fake_upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(env(fake_upstream, PASSGATE_UI_LOGIN_ATTEMPTS="3"))
    client = UiClient(gw.url)
    wrong = "sk-wrong-guess-0123456789"
    for _ in range(3):
        page = client.login(wrong)
        assert page.status == 401
        assert "not accepted" in page.text and wrong not in page.text
    page = client.login(MASTER_KEY)  # the right key, but too many attempts
    assert page.status == 429 and "Too many login attempts" in page.text
    assert client.get("/ui/").status == 303
    assert wrong not in gw.logs() and MASTER_KEY not in gw.logs()


def test_the_login_form_needs_its_own_token(gw: GatewayProcess) -> None:
    client = UiClient(gw.url)
    page = client.post("/ui/login", {"key": MASTER_KEY, "login_token": "forged"}, csrf=False)
    assert page.status == 403
    assert client.get("/ui/").status == 303


def test_state_changes_need_the_sessions_csrf_token(gw: GatewayProcess, admin: UiClient) -> None:
    key = new_key(gw)
    path = f"/ui/keys/{short_id(key['token'])}/block"
    assert admin.post(path, {}, csrf=False).status == 403
    other = UiClient(gw.url)
    other.login(MASTER_KEY)
    assert other.csrf and other.csrf != admin.csrf
    assert admin.post(path, {"csrf": other.csrf}).status == 403
    assert api(gw, "GET", f"/key/info?key={key['token']}")["info"]["blocked"] is False
    assert admin.post(path, {}).status == 303
    assert api(gw, "GET", f"/key/info?key={key['token']}")["info"]["blocked"] is True
    created = admin.post("/ui/keys/new", {"key_alias": "no-csrf"}, csrf=False)
    assert created.status == 403
    assert api(gw, "GET", "/key/list?key_alias=no-csrf")["total_count"] == 0


def test_every_value_is_escaped(gw: GatewayProcess, admin: UiClient) -> None:
    end_user = "<i>eu</i>\"'ü"
    key = new_key(
        gw,
        end_user_id=end_user,
        key_alias=NASTY,
        user_id=NASTY,
        metadata={"note": "<img src=x onerror=alert(1)>"},
        tags=["<b>tag</b>"],
    )
    assert call(gw, key["key"], model="<script>m()</script>") in (200, 400, 404)
    rows = wait_for_rows(gw, 1, user_id=NASTY)
    assert rows
    api(gw, "POST", "/team/new", {"team_id": "t-x", "team_alias": NASTY})
    kid = short_id(key["token"])
    pages = [
        "/ui/",
        "/ui/keys",
        f"/ui/keys/{kid}",
        f"/ui/keys/{kid}/edit",
        "/ui/logs",
        f"/ui/logs?call={rows[0]['call_id']}",
        "/ui/end-users",
        "/ui/teams",
    ]
    for path in pages:
        page = admin.get(path)
        assert page.status == 200, path
        for raw in ("<script>alert", "<img src=x", "<b>tag</b>", "<i>eu</i>", "<script>m()"):
            assert raw not in page.text, (path, raw)
        assert not INLINE_SCRIPT.search(page.text), path
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39;&#34;é漢" in admin.get("/ui/keys").text
    )
    detail = admin.get(f"/ui/logs?call={rows[0]['call_id']}").text
    assert "&lt;script&gt;m()&lt;/script&gt;" in detail
    assert "&lt;i&gt;eu&lt;/i&gt;&#34;&#39;ü" in detail


def test_a_virtual_key_sees_and_changes_only_its_own(gw: GatewayProcess) -> None:
    mine = new_key(gw, key_alias="mine-only")
    theirs = new_key(gw, key_alias="theirs-only")
    for secret in (mine["key"], mine["key"], theirs["key"]):
        assert call(gw, secret) == 200
    wait_for_rows(gw, 2, key=mine["token"])
    their_rows = wait_for_rows(gw, 1, key=theirs["token"])
    client = UiClient(gw.url)
    assert client.login(mine["key"]).status == 303
    for path in [
        "/ui/keys",
        "/ui/keys/new",
        "/ui/users",
        "/ui/teams",
        "/ui/end-users",
        "/ui/settings",
        f"/ui/keys/{short_id(theirs['token'])}",
        f"/ui/keys/{short_id(mine['token'])}/edit",
    ]:
        assert client.get(path).status == 403, path
    for action in ("block", "delete", "regenerate", "edit"):
        page = client.post(f"/ui/keys/{short_id(theirs['token'])}/{action}", {"key_alias": "x"})
        assert page.status == 403, action
    assert client.post("/ui/users", {"id": "sneaky"}).status == 403
    info = api(gw, "GET", f"/key/info?key={theirs['token']}")["info"]
    assert info["blocked"] is False and info["key_alias"] == "theirs-only"
    own = client.get(f"/ui/keys/{short_id(mine['token'])}")
    assert own.status == 200 and "mine-only" in own.text
    logs = client.get("/ui/logs")
    assert "mine-only" in logs.text and "theirs-only" not in logs.text
    assert client.get("/ui/logs?key=theirs-only").status == 403
    peek = client.get(f"/ui/logs?call={their_rows[0]['call_id']}")
    assert their_rows[0]["call_id"] not in peek.text and "theirs-only" not in peek.text
    overview = client.get("/ui/?range=24h")
    assert re.search(r'id="total-requests">2<', overview.text), overview.text
    assert "theirs-only" not in overview.text


def test_a_blocked_key_keeps_a_read_only_view_and_a_replaced_one_does_not(
    gw: GatewayProcess,
) -> None:
    key = new_key(gw, key_alias="soon-blocked")
    client = UiClient(gw.url)
    assert client.login(key["key"]).status == 303
    api(gw, "POST", "/key/block", {"key": key["token"]})
    page = client.get(f"/ui/keys/{short_id(key['token'])}")
    assert page.status == 200 and 'id="key-state">blocked' in page.text
    assert UiClient(gw.url).login(key["key"]).status == 303
    api(gw, "POST", "/key/regenerate", {"key": key["token"]})
    assert client.get("/ui/").status == 303  # the session named the replaced hash id
    assert UiClient(gw.url).login(key["key"]).status == 401


def test_a_deleted_keys_session_ends(gw: GatewayProcess) -> None:
    key = new_key(gw, key_alias="soon-deleted")
    client = UiClient(gw.url)
    assert client.login(key["key"]).status == 303
    assert client.get("/ui/").status == 200
    api(gw, "POST", "/key/delete", {"keys": [key["token"]]})
    assert client.get("/ui/").status == 303


def test_logout_and_expiry(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> None:
    # long enough for a login and a page on a loaded machine, short enough to wait out
    gw = start_gateway(env(fake_upstream, PASSGATE_UI_SESSION_TTL="4"))
    client = UiClient(gw.url)
    assert client.login(MASTER_KEY).status == 303
    assert client.get("/ui/").status == 200
    assert client.post("/ui/logout", {}).status == 303
    assert client.cookie("passgate_ui") is None
    assert client.get("/ui/").status == 303
    client.login(MASTER_KEY)
    assert client.get("/ui/").status == 200
    time.sleep(5.1)  # past the session lifetime
    assert client.get("/ui/").status == 303


def test_overview_totals_agree_with_spend_report(gw: GatewayProcess, admin: UiClient) -> None:
    key = new_key(gw, key_alias="agree")
    for model in ("mistral-small-latest", "mistral-large-latest", "mistral-small-latest"):
        assert call(gw, key["key"], model=model) == 200
    wait_for_rows(gw, 3, key=key["token"])
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    report = api(gw, "GET", f"/spend/report?start_time={day}&end_time={day}")["totals"]
    page = admin.get(f"/ui/?from={day}&to={day}").text
    requests = re.search(r'id="total-requests">([^<]+)<', page)
    cost = re.search(r'id="total-cost">([^<]+)<', page)
    tokens = re.search(r'id="total-tokens">([^<]+)<', page)
    assert requests and cost and tokens
    assert int(requests.group(1).replace(",", "")) == report["requests"]
    assert cost.group(1) == money(report["cost"])
    assert int(tokens.group(1).replace(",", "")) == report["total_tokens"]


def test_no_secret_is_rendered(gw: GatewayProcess, admin: UiClient) -> None:
    secret, kid = admin.create_key(key_alias="shown-once")
    for path in [*PAGES, f"/ui/keys/{kid}", f"/ui/keys/{kid}/edit"]:
        text = admin.get(path).text
        for value in (MASTER_KEY, PROVIDER_KEY, secret):
            assert value not in text, path
    info = api(gw, "GET", f"/key/info?key={secret}")
    token = info["key"]
    for path in [*PAGES, f"/ui/keys/{kid}"]:
        assert token not in admin.get(path).text, path  # only its first 16 digits
    settings = admin.get("/ui/settings").text
    assert "master_key" in settings and "mistral_api_key" in settings
    assert secret not in gw.logs() and MASTER_KEY not in gw.logs()


def test_a_team_budget_set_in_the_ui_is_the_admin_apis(admin: UiClient, gw: GatewayProcess) -> None:
    created = admin.post(
        "/ui/teams", {"id": "ui-budget-team", "max_budget": "12.5", "budget_duration": "7d"}
    )
    assert created.status == 303
    info = api(gw, "GET", "/team/info?team_id=ui-budget-team")
    team = info["team_info"]
    assert team["max_budget"] == 12.5
    assert team["budget_duration"] == "7d"
    assert team["budget_reset_at"] is not None  # the period starts with the budget

    edited = admin.post("/ui/teams/ui-budget-team/edit", {"max_budget": "", "budget_duration": ""})
    assert edited.status == 303
    info = api(gw, "GET", "/team/info?team_id=ui-budget-team")
    team = info["team_info"]
    assert team["max_budget"] is None
    assert team["budget_duration"] is None
    assert team["budget_reset_at"] is None


def test_a_keys_deployments_set_in_the_ui_are_the_admin_apis(
    admin: UiClient, gw: GatewayProcess
) -> None:
    secret, kid = admin.create_key(
        key_alias="ui-deployments", allowed_deployments="eu-west, us.east_2"
    )
    info = api(gw, "GET", f"/key/info?key={secret}")["info"]
    assert info["allowed_deployments"] == ["eu-west", "us.east_2"]
    assert "eu-west, us.east_2" in admin.get(f"/ui/keys/{kid}").text
    assert 'value="eu-west, us.east_2"' in admin.get(f"/ui/keys/{kid}/edit").text

    edit = {"key_alias": "ui-deployments", "allowed_deployments": "eu-west, -eu"}
    refused = admin.post(f"/ui/keys/{kid}/edit", edit)
    assert refused.status == 422 and "allowed_deployments.1" in refused.text
    info = api(gw, "GET", f"/key/info?key={secret}")["info"]
    assert info["allowed_deployments"] == ["eu-west", "us.east_2"]

    edit["allowed_deployments"] = ""
    assert admin.post(f"/ui/keys/{kid}/edit", edit).status == 303
    info = api(gw, "GET", f"/key/info?key={secret}")["info"]
    assert (info["key_alias"], info["allowed_deployments"]) == ("ui-deployments", [])
    assert "every deployment" in admin.get(f"/ui/keys/{kid}").text
