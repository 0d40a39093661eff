"""The key authenticator (master, open, virtual keys) and the key access guard."""

from __future__ import annotations

import pytest

from passgate.auth.authenticator import KeyAuthenticator
from passgate.auth.cache import KeyCache
from passgate.auth.guards import KeyAccessGuard, model_allowed, route_allowed
from passgate.auth.key_state import KeyState
from passgate.auth.keys import generate_key, hash_key
from passgate.auth.master import MasterKey
from passgate.errors import GatewayError
from passgate.exchange import Exchange, RequestInfo
from passgate.principal import MASTER, OPEN, Principal

MASTER_KEY = "sk-master-0123456789"
NOW = 1_700_000_000.0


class Keys:
    """An in-memory key store used as the cache's loader."""

    def __init__(self) -> None:
        self.states: dict[str, KeyState] = {}
        self.lookups = 0

    def add(self, **fields: object) -> str:
        secret = generate_key()
        principal = Principal(kind="virtual", token=hash_key(secret), **fields)  # type: ignore[arg-type]
        self.states[hash_key(secret)] = KeyState(principal)
        return secret

    async def __call__(self, token: str) -> KeyState | None:
        self.lookups += 1
        return self.states.get(token)


def exchange(route: str = "/mistral/v1/chat/completions", model: str | None = None) -> Exchange:
    return Exchange(
        request_id="r1",
        method="POST",
        route=route,
        upstream_path=route.removeprefix("/mistral"),
        provider="mistral",
        start_time=NOW,
        start=0.0,
        info=RequestInfo(model=model),
    )


def authenticator(keys: Keys, master: str | None = MASTER_KEY) -> KeyAuthenticator:
    return KeyAuthenticator(MasterKey(master), KeyCache(keys, ttl=5.0), clock=lambda: NOW)


async def refused(auth: KeyAuthenticator, token: str | None) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await auth.authenticate(token, exchange())
    return info.value


async def test_master_key_is_the_master_principal() -> None:
    keys = Keys()
    assert await authenticator(keys).authenticate(MASTER_KEY, exchange()) is MASTER
    assert keys.lookups == 0


async def test_missing_and_non_key_tokens_are_401_without_a_lookup() -> None:
    keys = Keys()
    auth = authenticator(keys)
    assert (await refused(auth, None)).code == "missing_api_key"
    probe = "x' OR (SELECT pg_sleep(3)) IS NOT NULL--"
    err = await refused(auth, probe)
    assert err.status == 401
    assert probe not in err.message
    assert keys.lookups == 0


async def test_virtual_key_becomes_its_principal_and_adds_its_tags() -> None:
    keys = Keys()
    secret = keys.add(key_alias="dev", metadata={"tags": ["team-a", "x"]})
    ex = exchange()
    ex.tags.append("x")
    principal = await authenticator(keys).authenticate(secret, ex)
    assert principal.kind == "virtual"
    assert principal.token == hash_key(secret)
    assert principal.key_alias == "dev"
    assert ex.tags == ["x", "team-a"]


async def test_unknown_key_is_401_and_the_message_never_echoes_it() -> None:
    keys = Keys()
    secret = generate_key()
    err = await refused(authenticator(keys), secret)
    assert err.status == 401
    assert err.code == "invalid_api_key"
    assert secret not in err.body().decode()
    assert hash_key(secret) not in err.body().decode()


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ({"blocked": True}, "key_blocked"),
        ({"expires_at": NOW}, "key_expired"),
        ({"replaced": True}, "key_regenerated"),
        ({"replaced": True, "grace_until": NOW - 1}, "key_regenerated"),
    ],
)
async def test_refused_states(state: dict[str, object], code: str) -> None:
    keys = Keys()
    secret = keys.add()
    token = hash_key(secret)
    keys.states[token] = KeyState(keys.states[token].principal, **state)  # type: ignore[arg-type]
    err = await refused(authenticator(keys), secret)
    assert (err.status, err.code) == (401, code)
    assert secret not in err.message and token not in err.message


async def test_replaced_key_works_during_its_grace_period() -> None:
    keys = Keys()
    secret = keys.add()
    token = hash_key(secret)
    keys.states[token] = KeyState(keys.states[token].principal, replaced=True, grace_until=NOW + 1)
    assert (await authenticator(keys).authenticate(secret, exchange())).token == token


async def test_open_gateway_admits_anyone_but_known_keys_run_as_themselves() -> None:
    keys = Keys()
    secret = keys.add(key_alias="dev")
    auth = authenticator(keys, master=None)
    assert await auth.authenticate(None, exchange()) is OPEN
    assert await auth.authenticate("anything", exchange()) is OPEN
    assert await auth.authenticate(generate_key(), exchange()) is OPEN
    assert (await auth.authenticate(secret, exchange())).key_alias == "dev"


async def test_database_failure_is_503_without_details() -> None:
    async def broken(token: str) -> KeyState | None:
        raise ConnectionRefusedError(f"cannot reach db for {token}")

    auth = KeyAuthenticator(MasterKey(MASTER_KEY), KeyCache(broken, ttl=1.0))
    secret = generate_key()
    err = await refused(auth, secret)
    assert err.status == 503
    assert hash_key(secret) not in err.body().decode()


@pytest.mark.parametrize(
    ("route", "prefixes", "allowed"),
    [
        ("/mistral/v1/ocr", ["/mistral/v1/ocr"], True),
        ("/mistral/v1/ocr/x", ["/mistral/v1/ocr"], True),
        ("/mistral/v1/ocrx", ["/mistral/v1/ocr"], False),
        ("/mistral/v1/chat/completions", ["/mistral/v1/ocr"], False),
        ("/mistral/v1/anything", ["/mistral/"], True),
        ("/mistral/v1/anything", ["/mistral/v1/*"], True),
        ("/mistralx", ["/mistral/"], False),
    ],
)
def test_route_prefixes_match_whole_segments(
    route: str, prefixes: list[str], allowed: bool
) -> None:
    assert route_allowed(route, prefixes) is allowed


def test_model_allowlist_entries() -> None:
    assert model_allowed("mistral-small-latest", ["mistral-small-latest"])
    assert model_allowed("mistral-small-2501", ["mistral-small-*"])
    assert not model_allowed("mistral-large-latest", ["mistral-small-*"])
    assert model_allowed("anything", ["*"])


async def guard_error(principal: Principal, ex: Exchange) -> GatewayError | None:
    ex.principal = principal
    try:
        await KeyAccessGuard().admit(ex)
    except GatewayError as err:
        return err
    return None


async def test_guard_refuses_a_model_outside_the_allowlist_naming_it() -> None:
    key = Principal(kind="virtual", token="t", models=("mistral-small-latest",))
    assert await guard_error(key, exchange(model="mistral-small-latest")) is None
    err = await guard_error(key, exchange(model="mistral-large-latest"))
    assert err is not None and err.status == 403
    assert "mistral-large-latest" in err.message


async def test_guard_refuses_a_body_without_a_readable_model_for_restricted_keys() -> None:
    key = Principal(kind="virtual", token="t", models=("mistral-ocr-latest",))
    err = await guard_error(key, exchange("/mistral/v1/ocr", model=None))
    assert err is not None and err.status == 400
    assert "could not read the model" in err.message
    listing = exchange("/mistral/v1/models")
    listing.method = "GET"
    assert await guard_error(key, listing) is None
    assert await guard_error(Principal(kind="virtual", token="t"), exchange()) is None


async def test_guard_refuses_routes_outside_allowed_routes() -> None:
    key = Principal(kind="virtual", token="t", allowed_routes=("/mistral/v1/ocr",))
    assert await guard_error(key, exchange("/mistral/v1/ocr", model="m")) is None
    err = await guard_error(key, exchange("/mistral/v1/chat/completions", model="m"))
    assert err is not None and (err.status, err.code) == (403, "route_not_allowed")


async def test_guard_lets_master_and_open_through() -> None:
    for principal in (MASTER, OPEN):
        assert await guard_error(principal, exchange(model=None)) is None
