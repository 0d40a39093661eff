"""The router: pins, resources' homes, listings and sessions, before the pool's draw."""

from __future__ import annotations

import gzip
from collections.abc import Sequence

import orjson
import pytest

from passgate.errors import GatewayError
from passgate.exchange import Exchange, RequestInfo
from passgate.principal import MASTER, Principal
from passgate.providers.base import Provider
from passgate.providers.mistral import MistralSpec
from passgate.proxy.deployments import Deployment, DeploymentPool
from passgate.proxy.routing import FREE, DeploymentRouter


class Homes:
    def __init__(self) -> None:
        self.known: dict[str, str] = {}
        self.asked: list[list[str]] = []

    async def find(self, provider: str, resource_ids: Sequence[str]) -> str | None:
        self.asked.append(list(resource_ids))
        return next((self.known[i] for i in resource_ids if i in self.known), None)

    async def remember(self, provider: str, resource_ids: Sequence[str], deployment: str) -> None:
        for resource_id in resource_ids:
            self.known[resource_id] = deployment


SPEC = MistralSpec()


def deployments(*names: str, primary: str | None = None) -> list[Deployment]:
    return [
        Deployment(n, Provider.of(SPEC, f"http://{n}.example", None), 1.0, None, n == primary)
        for n in names
    ]


def router(*names: str, primary: str | None = None) -> tuple[DeploymentRouter, Homes]:
    homes = Homes()
    pool = DeploymentPool("mistral", deployments(*names, primary=primary))
    return DeploymentRouter(SPEC, pool, homes), homes


def call(method: str, path: str, body: object = None, principal: Principal = MASTER) -> Exchange:
    ex = Exchange("r", method, "/mistral" + path, path, "mistral", 0.0, 0.0, api_path=path)
    ex.principal = principal
    ex.info = RequestInfo(body=body)
    return ex


async def test_a_pin_names_the_deployment() -> None:
    r, _ = router("a", "b")
    route = await r.route(call("POST", "/v1/chat/completions"), b"b", None)
    assert route.fixed is not None and route.fixed.name == "b"
    with pytest.raises(GatewayError) as caught:
        await r.route(call("POST", "/v1/chat/completions"), b"zzz", None)
    assert caught.value.status == 400


async def test_a_key_may_pin_only_its_deployments() -> None:
    r, _ = router("a", "b")
    limited = Principal(kind="virtual", token="t", allowed_deployments=("a",))
    with pytest.raises(GatewayError) as caught:
        await r.route(call("POST", "/v1/chat/completions", principal=limited), b"b", None)
    assert caught.value.status == 403 and caught.value.code == "deployment_not_allowed"
    route = await r.route(call("POST", "/v1/chat/completions", principal=limited), b"a", None)
    assert route.fixed is not None
    free = Principal(kind="virtual", token="t")  # no list: every deployment
    assert (await r.route(call("GET", "/v1/files", principal=free), b"b", None)).fixed


async def test_a_resource_goes_home_and_a_key_must_reach_it() -> None:
    r, homes = router("a", "b")
    homes.known["file-1"] = "b"
    route = await r.route(call("GET", "/v1/files/file-1/content"), None, None)
    assert route.fixed is not None and route.fixed.name == "b"
    body = {"input_files": ["file-1"], "model": "mistral-small-latest"}
    route = await r.route(call("POST", "/v1/batch/jobs", body), None, None)
    assert route.fixed is not None and route.fixed.name == "b" and route.capture
    limited = Principal(kind="virtual", token="t", allowed_deployments=("a",))
    with pytest.raises(GatewayError) as caught:
        await r.route(call("DELETE", "/v1/files/file-1", principal=limited), None, None)
    assert caught.value.status == 403


async def test_an_unknown_resource_and_a_removed_home_are_routed_freely() -> None:
    r, homes = router("a", "b")
    assert (await r.route(call("GET", "/v1/files/never-seen"), None, None)).fixed is None
    homes.known["file-2"] = "gone"
    assert (await r.route(call("GET", "/v1/files/file-2"), None, None)).fixed is None


async def test_listings_go_to_the_primary_and_creates_are_captured() -> None:
    r, _ = router("a", "b", "c", primary="c")
    route = await r.route(call("GET", "/v1/files"), None, None)
    assert route.fixed is not None and route.fixed.name == "c"
    created = await r.route(call("POST", "/v1/files"), None, b"s")
    assert created.fixed is None and created.capture and created.session == b"s"
    chat = await r.route(call("POST", "/v1/chat/completions", {"model": "m"}), None, None)
    assert chat == FREE


async def test_a_pool_of_one_follows_nothing() -> None:
    r, homes = router("default")
    homes.known["file-1"] = "default"
    assert await r.route(call("GET", "/v1/files/file-1"), None, None) == FREE
    assert homes.asked == []  # no database look-up on the hot path of a single deployment


async def test_created_ids_are_remembered_from_plain_and_gzip_answers() -> None:
    r, homes = router("a", "b")
    ex = call("POST", "/v1/files")
    ex.deployment = "b"
    await r.remember(ex, orjson.dumps({"id": "f-1", "object": "file"}), None)
    await r.remember(ex, gzip.compress(orjson.dumps({"id": "f-2"})), b"gzip")
    await r.remember(ex, b"not json", None)
    await r.remember(ex, b"\x00garbage", b"gzip")
    await r.remember(ex, b"{}", b"br")  # cannot be read: not followed
    assert homes.known == {"f-1": "b", "f-2": "b"}
