"""The deployment pool: which deployment takes a call, and which are set aside."""

from __future__ import annotations

from collections import Counter

import pytest

from passgate.errors import GatewayError
from passgate.providers.base import Provider
from passgate.providers.mistral import MistralSpec
from passgate.proxy.deployments import (
    CONNECT_FAILED,
    DEAD,
    HEALTHY,
    KEY_REFUSED,
    RATE_LIMITED,
    Deployment,
    DeploymentPool,
    Health,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dep(name: str, weight: float = 1.0, models: set[str] | None = None) -> Deployment:
    provider = Provider.of(MistralSpec(), f"http://{name}.example", "k")
    return Deployment(name, provider, weight, None if models is None else frozenset(models), False)


def pool(*deployments: Deployment, clock: Clock | None = None) -> DeploymentPool:
    return DeploymentPool("mistral", deployments, clock=clock or Clock())


def picks(p: DeploymentPool, count: int, model: str | None = "m", **kw: object) -> Counter[str]:
    found: Counter[str] = Counter()
    for _ in range(count):
        chosen = p.pick(model, **kw)  # type: ignore[arg-type]
        assert chosen is not None
        found[chosen.name] += 1
    return found


def test_weights_are_honoured_exactly_over_a_run() -> None:
    p = pool(dep("a", 1), dep("b", 1), dep("c", 2))
    assert picks(p, 400) == {"a": 100, "b": 100, "c": 200}


def test_weighted_turns_interleave() -> None:
    p = pool(dep("a", 1), dep("b", 3))
    order = [p.pick("m").name for _ in range(8)]  # type: ignore[union-attr]
    assert order.count("a") == 2
    assert order[:4].count("a") == 1  # spread, not bunched


def test_model_lists_route_calls() -> None:
    local = dep("local", models={"my-finetune"})
    p = pool(dep("cloud"), local)
    assert set(picks(p, 10, "my-finetune")) == {"cloud", "local"}
    assert set(picks(p, 10, "mistral-large")) == {"cloud"}
    assert set(picks(p, 10, None)) == {"cloud"}  # a call naming no model: no model list


def test_no_deployment_serving_the_model_is_a_400() -> None:
    p = pool(dep("a", models={"x"}), dep("b", models={"y"}))
    with pytest.raises(GatewayError) as caught:
        p.pick("z")
    assert caught.value.status == 400 and caught.value.code == "model_not_served"
    assert set(picks(p, 4, None)) == {"a", "b"}  # every deployment has a list: any


def test_a_keys_deployments_bound_the_choice() -> None:
    p = pool(dep("a"), dep("b"), dep("c"))
    assert set(picks(p, 9, allowed=("b",))) == {"b"}
    with pytest.raises(GatewayError) as caught:
        p.pick("m", allowed=("nowhere",))
    assert caught.value.status == 403


def test_a_set_aside_deployment_is_skipped_until_its_time() -> None:
    clock = Clock()
    a, b = dep("a"), dep("b")
    p = pool(a, b, clock=clock)
    p.set_aside(a, RATE_LIMITED, 2.0)
    assert set(picks(p, 6)) == {"b"}
    assert p.health("a").state == "cooling_down"
    clock.now += 2.0
    assert set(picks(p, 6)) == {"a", "b"}
    assert [h.state for _, h in p.snapshot()] == [HEALTHY, HEALTHY]
    assert p.snapshot()[0][1].error == RATE_LIMITED  # the last error is kept


def test_all_set_aside_gives_429_with_the_shortest_wait_or_503() -> None:
    clock = Clock()
    a, b = dep("a"), dep("b")
    p = pool(a, b, clock=clock)
    p.set_aside(a, RATE_LIMITED, 30.0)
    p.set_aside(b, CONNECT_FAILED, 6.5)
    with pytest.raises(GatewayError) as caught:
        p.pick("m")
    assert caught.value.status == 429
    assert dict(caught.value.headers)[b"retry-after"] == b"7"
    q = pool(a, b, clock=clock)
    q.set_aside(a, CONNECT_FAILED, 3.0)
    q.set_aside(b, KEY_REFUSED, 600.0)
    with pytest.raises(GatewayError) as caught:
        q.pick("m")
    assert caught.value.status == 503 and dict(caught.value.headers)[b"retry-after"] == b"3"
    assert q.health("b").state == DEAD


def test_after_an_attempt_none_means_nowhere_else() -> None:
    a, b = dep("a"), dep("b")
    p = pool(a, b)
    first = p.pick("m")
    assert first is not None
    second = p.pick("m", tried=[first])
    assert second is not None and second != first
    assert p.pick("m", tried=[first, second]) is None


def test_a_pool_of_one_is_never_set_aside() -> None:
    only = dep("default")
    p = pool(only)
    p.set_aside(only, KEY_REFUSED, 600.0)
    assert p.pick("m") is only
    assert p.pick("m", allowed=("elsewhere",)) is only  # a key's deployments: a choice's
    assert p.pick("m", tried=[only]) is None
    assert p.health("default").state == HEALTHY


def test_a_session_stays_on_one_deployment_while_it_is_healthy() -> None:
    deployments = [dep(n) for n in "abcd"]
    p = pool(*deployments)
    home = {p.pick("m", session=b"session-1").name for _ in range(10)}  # type: ignore[union-attr]
    assert len(home) == 1
    spread = {p.pick("m", session=b"s-%d" % i).name for i in range(40)}  # type: ignore[union-attr]
    assert len(spread) == 4  # sessions spread over the deployments
    (name,) = home
    p.set_aside(next(d for d in deployments if d.name == name), CONNECT_FAILED, 5.0)
    moved = p.pick("m", session=b"session-1")
    assert moved is not None and moved.name != name
    # the same in another process: the choice depends on the session and the names only
    other = pool(*[dep(n) for n in "abcd"])
    assert other.pick("m", session=b"session-1").name == name  # type: ignore[union-attr]


def test_states_from_other_workers_apply_when_they_last_longer() -> None:
    clock = Clock()
    a, b = dep("a"), dep("b")
    p = pool(a, b, clock=clock)
    told: list[tuple[str, str, Health]] = []
    p.listeners.append(lambda provider, name, health: told.append((provider, name, health)))
    p.set_aside(a, CONNECT_FAILED, 5.0)
    assert told[0][:2] == ("mistral", "a")
    p.apply("a", Health("cooling_down", clock.now + 1.0, clock.now, RATE_LIMITED))
    assert p.health("a").error == CONNECT_FAILED  # shorter: ignored
    p.apply("b", Health("dead", clock.now + 600.0, clock.now, KEY_REFUSED))
    assert p.health("b").state == DEAD
    p.apply("unknown", Health("dead", clock.now + 600.0))  # not configured here: ignored
    assert p.named("unknown") is None


def test_a_failing_listener_does_not_fail_the_call() -> None:
    a, b = dep("a"), dep("b")
    p = pool(a, b)

    def broken(provider: str, name: str, health: Health) -> None:
        raise RuntimeError("boom")

    p.listeners.append(broken)
    p.set_aside(a, CONNECT_FAILED, 5.0)
    assert p.pick("m") is b
