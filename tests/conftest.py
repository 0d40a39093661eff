"""Shared fixtures: a fake Mistral upstream and real passgate processes pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess

PROVIDER_KEY = "mk-provider-secret-0123456789"
MASTER_KEY = "sk-master-secret-0123456789"

GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[FakeMistral]:
    with FakeMistral() as fake:
        yield fake


@pytest.fixture
def upstream(fake_upstream: FakeMistral) -> FakeMistral:
    """The module's fake upstream, reset to its defaults for this test."""
    fake_upstream.reset()
    return fake_upstream


@pytest.fixture(scope="module")
def start_gateway() -> Iterator[GatewayFactory]:
    """Start passgate processes; all are stopped when the module ends."""
    started: list[GatewayProcess] = []

    def start(env: dict[str, str], workers: int = 1, **kwargs: object) -> GatewayProcess:
        gateway = GatewayProcess(env, workers=workers, **kwargs)  # type: ignore[arg-type]
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.close()


@pytest.fixture(scope="module")
def gateway(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> GatewayProcess:
    """One gateway with a master key, in front of the module's fake upstream."""
    return start_gateway(
        {
            "MISTRAL_API_BASE": fake_upstream.url,
            "MISTRAL_API_KEY": PROVIDER_KEY,
            "PASSGATE_MASTER_KEY": MASTER_KEY,
        }
    )
