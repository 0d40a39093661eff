"""A browser-like HTTP client for the web UI: keeps cookies, never follows redirects, and
pulls the CSRF and login tokens out of the pages it reads."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_LOGIN = re.compile(r'name="login_token" value="([^"]+)"')
_SECRET = re.compile(r'id="secret" class="mono" readonly value="([^"]+)"')
_KEY_LINK = re.compile(r'/ui/keys/([0-9a-f]{16})"')


@dataclass
class Page:
    status: int
    headers: Message
    text: str

    @property
    def location(self) -> str | None:
        return self.headers.get("location")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class UiClient:
    """One browser session against ``base`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirects()
        )
        self.csrf: str | None = None

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            with self._opener.open(request, timeout=15) as resp:
                page = Page(resp.status, resp.headers, resp.read().decode())
        except urllib.error.HTTPError as exc:
            page = Page(exc.code, exc.headers, exc.read().decode())
        found = _CSRF.search(page.text)
        if found:
            self.csrf = found.group(1)
        return page

    def get(self, path: str) -> Page:
        """GET a page."""
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: dict[str, str], csrf: bool = True) -> Page:
        """POST a form, with the signed-in client's CSRF token unless ``csrf`` is false or given."""
        data = dict(fields)
        if csrf and "csrf" not in data and self.csrf:
            data["csrf"] = self.csrf
        body = urllib.parse.urlencode(data).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, method="POST"))

    def login(self, key: str) -> Page:
        """Log in through the form; the answer to the POST (a redirect when accepted)."""
        form = self.get("/ui/login")
        token = _LOGIN.search(form.text)
        assert token, form.text
        page = self.post("/ui/login", {"login_token": token.group(1), "key": key}, csrf=False)
        if page.status == 303:
            self.get("/ui/")  # picks up the session's CSRF token
        return page

    def create_key(self, **fields: str) -> tuple[str, str]:
        """Create a key through the form: (plaintext, short key id)."""
        self.get("/ui/keys/new")
        page = self.post("/ui/keys/new", fields)
        secret = _SECRET.search(page.text)
        link = _KEY_LINK.search(page.text)
        assert page.status == 200 and secret and link, page.text
        return secret.group(1), link.group(1)

    def cookie(self, name: str) -> http.cookiejar.Cookie | None:
        """A cookie the session holds."""
        return next((c for c in self.cookies if c.name == name), None)
