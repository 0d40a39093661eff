"""The web UI in a real browser (headless Chromium from the system, driven by Selenium)
against a real ``passgate`` process and the fake upstream.

The scenario: log in with the master key, create a key with a budget, read its plaintext
once, call ``/mistral`` with it, find the call in Logs with its cost and in the Overview
totals, block the key, see the next call refused, log in as that key and see only its own
data, log out. Every page is screenshotted at 1280 and 390 px (``build/ui-screenshots``);
no page may log a console error or a failed request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlencode

import orjson
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from passgate.ui.filters import money
from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.browser import chromium, console_errors, screenshot
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.http import request

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
# mistral-small-latest: 10 prompt and 20 completion tokens from the fake upstream, at
# 0.15 and 0.6 USD per million tokens
CALL_COST = (10 * 0.15 + 20 * 0.6) / 1e6


@pytest.fixture(scope="module")
def gw(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> GatewayProcess:
    return start_gateway(
        {
            "MISTRAL_API_BASE": fake_upstream.url,
            "MISTRAL_API_KEY": PROVIDER_KEY,
            "PASSGATE_MASTER_KEY": MASTER_KEY,
            "PASSGATE_SPEND_FLUSH_INTERVAL": "0.05",
        }
    )


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


def call(gw: GatewayProcess, secret: str, **extra: str) -> int:
    body = orjson.dumps(
        {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hi"}]}
    )
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json", **extra}
    return request(gw.url, "POST", "/mistral/v1/chat/completions", body, headers).status


def page_replaced(driver: webdriver.Chrome, old: WebElement) -> None:
    """Wait until the page holding ``old`` has been replaced by the next one."""
    # While a navigation swaps the document, chromedriver can answer the staleness check with
    # a plain error ("Node with given id does not belong to the document"): ask again.
    WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,)).until(staleness_of(old))


class Pages:
    """Opens pages, checks the console after each, and takes screenshots."""

    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver = driver
        self.base = base

    def open(self, path: str, shot: str | None = None) -> None:
        self.driver.get(self.base + path)
        self.settled(shot)

    def settled(self, shot: str | None = None) -> None:
        assert self.driver.execute_script("return document.readyState") == "complete"
        errors = console_errors(self.driver)
        assert not errors, errors
        if shot:
            screenshot(self.driver, shot)

    def text(self, css: str) -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def text_appears(self, css: str, timeout: float = 5.0) -> str:
        """The element's text once a script has written some (a promise may resolve late)."""
        element = self.driver.find_element(By.CSS_SELECTOR, css)
        WebDriverWait(self.driver, timeout).until(lambda _: element.text)
        return str(element.text)

    def fill(self, fields: dict[str, str]) -> None:
        for name, value in fields.items():
            box = self.driver.find_element(By.NAME, name)
            box.clear()
            box.send_keys(value)

    def click(self, by: str, what: str, shot: str | None = None) -> None:
        """Click something that loads a new page, and wait for it."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(by, what).click()
        page_replaced(self.driver, old)
        self.settled(shot)

    def submit(self, css: str = "main form button[type=submit]") -> None:
        self.click(By.CSS_SELECTOR, css)

    def login(self, key: str, shot: str | None = None) -> None:
        self.open("/ui/login", shot)
        box = self.driver.find_element(By.ID, "f-key")
        box.send_keys(key)
        old = self.driver.find_element(By.TAG_NAME, "html")
        box.send_keys(Keys.ENTER)  # keyboard only
        page_replaced(self.driver, old)
        self.settled()
        assert self.driver.current_url.rstrip("/").endswith("/ui"), self.driver.current_url

    def logout(self) -> None:
        self.submit("header form.logout button")
        assert self.driver.current_url.endswith("/ui/login")


def wait_for_log_row(pages: Pages, alias: str) -> None:
    deadline = time.monotonic() + 20
    while alias not in pages.text("main"):
        assert time.monotonic() < deadline, "the call never showed in Logs"
        time.sleep(0.2)
        pages.open("/ui/logs")


def test_admin_scenario_end_to_end(gw: GatewayProcess, browser: webdriver.Chrome) -> None:
    pages = Pages(browser, gw.url)
    pages.login(MASTER_KEY, shot="login")
    screenshot(browser, "overview-empty")

    # create a key with a budget; its plaintext is shown once
    pages.open("/ui/keys", "keys-empty")
    pages.click(By.LINK_TEXT, "Create a key", "key-new")
    pages.fill({"key_alias": "browser-key", "max_budget": "10", "rpm_limit": "600"})
    pages.submit()
    secret = browser.find_element(By.ID, "secret").get_attribute("value")
    assert secret and secret.startswith("sk-")
    browser.find_element(By.CSS_SELECTOR, "button[data-copy]").click()
    assert pages.text_appears("[data-copied-for=secret]")  # copied, or selected for Ctrl+C
    pages.settled("key-created")
    pages.click(By.LINK_TEXT, "Go to the key")
    key_url = browser.current_url
    assert secret not in browser.page_source  # never shown again

    # a call with it through /mistral, then in Logs with its cost, and in the Overview
    assert call(gw, secret) == 200
    pages.open("/ui/logs")
    wait_for_log_row(pages, "browser-key")
    assert money(CALL_COST) in pages.text("#log-table")
    pages.settled("logs")
    pages.click(By.CSS_SELECTOR, "#log-table tbody a", "log-detail")
    assert "browser-key" in pages.text("#detail") and money(CALL_COST) in pages.text("#detail")
    pages.open("/ui/?range=24h", "overview")
    assert pages.text("#total-requests") == "1"
    assert pages.text("#total-cost") == money(CALL_COST)

    # block it: the next call is refused
    browser.get(key_url)
    pages.settled("key-detail")
    budget = pages.text("#budgets tbody tr")
    assert "key 'browser-key'" in budget and "$10.00" in budget
    pages.click(By.ID, "toggle-block")
    assert pages.text("#key-state") == "blocked"
    assert call(gw, secret) == 401

    # the other admin pages
    for path, shot in [
        (key_url.removeprefix(gw.url) + "/edit", "key-edit"),
        (key_url.removeprefix(gw.url) + "/regenerate", "key-regenerate"),
        (key_url.removeprefix(gw.url) + "/delete", "key-delete"),
        ("/ui/keys", "keys"),
        ("/ui/settings", "settings"),
    ]:
        pages.open(path, shot)
    for kind in ("users", "teams", "end-users"):
        pages.open(f"/ui/{kind}")
        pages.fill({"id": f"first-{kind}", "alias": "Ünïcode <name>", "max_budget": "25"})
        pages.submit("main form.card button[type=submit]")
        assert f"first-{kind}" in pages.text("main table")
        pages.settled(kind)
    pages.logout()

    # the key's own view: its data only, read-only
    pages.login(secret)
    assert pages.text("#total-requests") == "1"
    screenshot(browser, "self-overview")
    nav = pages.text("header nav")
    assert "Keys" not in nav and "Settings" not in nav and "My key" in nav
    pages.click(By.LINK_TEXT, "My key", "self-key")
    assert pages.text("#key-state") == "blocked"
    assert not browser.find_elements(By.ID, "toggle-block")
    pages.open("/ui/logs", "self-logs")
    assert "browser-key" in pages.text("#log-table")
    pages.logout()
    pages.open("/ui/")
    assert browser.current_url.endswith("/ui/login")


def test_a_failed_action_says_why(gw: GatewayProcess, browser: webdriver.Chrome) -> None:
    reply = request(gw.url, "POST", "/key/generate", orjson.dumps({"key_alias": "taken"}), ADMIN)
    assert reply.status == 200
    pages = Pages(browser, gw.url)
    pages.login(MASTER_KEY)
    pages.open("/ui/keys/new")
    pages.fill({"key_alias": "taken", "max_budget": "ten"})
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    page_replaced(browser, old)
    # a 422 page is a failed request to the console: read it, then expect nothing else
    assert "Max budget: enter a number" in pages.text(".error")
    browser.get_log("browser")  # type: ignore[no-untyped-call]
    pages.fill({"max_budget": "10"})
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    page_replaced(browser, old)
    assert "already used by another key" in pages.text(".error")
    browser.get_log("browser")  # type: ignore[no-untyped-call]
    screenshot(browser, "key-new-error")
    query = urlencode({"q": "no-such-alias"})
    pages.open(f"/ui/keys?{query}")
    assert "No key matches these filters." in pages.text("main")
