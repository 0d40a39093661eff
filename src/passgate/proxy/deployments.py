"""A provider's upstream deployments: which one takes a call, and which are cooling down.

Each call's choice is made in memory: among the deployments that serve the call's model,
that the caller's key may reach and that are not cooling down, one is taken by smooth
weighted round robin (or,
for a call carrying a session id, by rendezvous hashing, so that a session stays on one
deployment while it is healthy, in every worker and instance alike). A deployment that
failed is cooled down here; its ``listeners`` tell whoever shares the state with other
workers (``passgate.pooling.shared_health``), which brings theirs back with ``apply``.

A pool of one deployment is never cooled down: there is nowhere else to go, so its
answers reach the caller as they are.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b

from passgate.errors import GatewayError
from passgate.providers.base import Provider

log = logging.getLogger("passgate.deployments")

# Why a deployment was set aside (the last error class shown by /health/deployments and
# a metrics label).
RATE_LIMITED = "rate_limited"  # 429
KEY_REFUSED = "key_refused"  # 401 / 403: the deployment's key is dead
UNAVAILABLE = "unavailable"  # 502 / 503 / 504
CONNECT_FAILED = "connect_failed"  # no connection to the upstream
RESET = "reset"  # the connection broke before the answer's head

HEALTHY = "healthy"
COOLING = "cooling_down"
DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Deployment:
    """One upstream deployment: a name, where it is (``provider``: origin, base path and
    credential), its share of the traffic and the models it serves (all when None)."""

    name: str
    provider: Provider
    weight: float
    models: frozenset[str] | None
    primary: bool

    def serves(self, model: str | None) -> bool:
        """Whether a call for ``model`` may go here: a deployment with a model list takes
        only calls naming one of them; one without takes every call."""
        if self.models is None:
            return True
        return model is not None and model in self.models


@dataclass(frozen=True, slots=True)
class Health:
    """A deployment's state: healthy, or set aside until ``until`` (epoch seconds)."""

    state: str = HEALTHY
    until: float = 0.0
    since: float | None = None  # when it was set aside
    error: str | None = None  # the error class that set it aside

    def available(self, now: float) -> bool:
        """Whether it takes calls at ``now``."""
        return self.until <= now


_WELL = Health()
HealthListener = Callable[[str, str, Health], None]  # (provider, deployment, health)


class DeploymentPool:
    """The deployments of one provider and their health, as this worker knows it."""

    def __init__(
        self,
        provider: str,
        deployments: Sequence[Deployment],
        *,
        clock: Callable[[], float] = time.time,
        listeners: Sequence[HealthListener] = (),
    ) -> None:
        if not deployments:
            raise ValueError(f"{provider}: a pool needs at least one deployment")
        self.provider = provider
        self.deployments = tuple(deployments)
        self.single = len(self.deployments) == 1
        self.primary = next((d for d in self.deployments if d.primary), self.deployments[0])
        self._by_name = {d.name: d for d in self.deployments}
        self._general = [d for d in self.deployments if d.models is None] or list(self.deployments)
        self._every_model = all(d.models is None for d in self.deployments)
        self._health: dict[str, Health] = {d.name: _WELL for d in self.deployments}
        self._clock = clock
        self._current = {d.name: 0.0 for d in self.deployments}  # the round robin's scores
        self._aside_until = 0.0  # when the last deployment set aside is back
        # told of every deployment set aside: the metrics, the other workers
        self.listeners: list[HealthListener] = list(listeners)

    def named(self, name: str) -> Deployment | None:
        """The deployment called ``name``, if there is one."""
        return self._by_name.get(name)

    def health(self, name: str) -> Health:
        """The state of the deployment called ``name``."""
        return self._health.get(name, _WELL)

    def pick(
        self,
        model: str | None,
        allowed: tuple[str, ...] = (),
        session: bytes | None = None,
        tried: Sequence[Deployment] = (),
    ) -> Deployment | None:
        """The deployment for a call (``allowed``: the key's deployments, empty for all; they
        do not restrict a pool of one).

        With nothing tried yet, a ``GatewayError`` says why none can take the call (no
        deployment serves the model, the key may reach none, all are set aside: 429 or 503
        with the shortest wait as Retry-After). After a failed attempt, None: no other
        deployment is left, and the caller gets the last answer.
        """
        if self.single:
            # a key's deployments restrict providers with a choice; one deployment serves all
            return None if tried else self.deployments[0]
        now = self._clock()
        serving = self.deployments if self._every_model else self._serving(model)
        if not serving:
            raise _no_model(self.provider, model)
        eligible: Sequence[Deployment] = serving
        if allowed or tried:
            eligible = [
                d for d in serving if not (allowed and d.name not in allowed) and d not in tried
            ]
        if not eligible:
            if tried:
                return None
            raise _not_allowed(self.provider)
        health = self._health
        # while nothing is set aside (the usual case) there is nothing to filter out
        up = (
            eligible
            if now >= self._aside_until
            else [d for d in eligible if health[d.name].until <= now]
        )
        if not up:
            if tried:
                return None
            raise self._all_set_aside(eligible, now)
        if len(up) == 1:
            return up[0]
        if session is not None:
            return _rendezvous(up, session)
        # smooth weighted round robin (nginx's): over any run of calls each deployment gets
        # its share to within one call, interleaved, where a random draw would only tend to it
        current = self._current
        total = 0.0
        best = up[0]
        best_score = -math.inf
        for dep in up:
            score = current[dep.name] + dep.weight
            current[dep.name] = score
            total += dep.weight
            if score > best_score:
                best, best_score = dep, score
        current[best.name] -= total
        return best

    def _serving(self, model: str | None) -> Sequence[Deployment]:
        """The deployments that serve ``model``; a call naming no model goes to those without
        a model list, or to any when every deployment has one."""
        if model is None:
            return self._general
        return [d for d in self.deployments if d.serves(model)]

    def set_aside(self, dep: Deployment, error: str, wait: float) -> None:
        """Cool ``dep`` down (or mark its key dead) for ``wait`` seconds after ``error``;
        nothing happens in a pool of one."""
        if self.single:
            return
        now = self._clock()
        state = DEAD if error == KEY_REFUSED else COOLING
        old = self._health[dep.name]
        since = old.since if old.state == state and not old.available(now) else now
        health = Health(state, now + wait, since, error)
        self._health[dep.name] = health
        self._aside_until = max(self._aside_until, health.until)
        if state == DEAD:
            log.error(
                "deployment %r of %s: the upstream refused its key; it gets no calls for %.0f s",
                dep.name,
                self.provider,
                wait,
            )
        else:
            log.warning(
                "deployment %r of %s set aside for %.1f s (%s)",
                dep.name,
                self.provider,
                wait,
                error,
            )
        for listener in self.listeners:
            try:
                listener(self.provider, dep.name, health)
            except Exception as exc:  # a listener's failure must not fail the call
                log.error("a deployment state listener failed: %s", type(exc).__name__)

    def apply(self, name: str, health: Health) -> None:
        """Take a state another worker or instance published, when it sets the deployment
        aside for longer than this worker knows of."""
        if name in self._health and health.until > self._health[name].until:
            self._health[name] = health
            self._aside_until = max(self._aside_until, health.until)

    def snapshot(self) -> list[tuple[Deployment, Health]]:
        """Each deployment with its state, in configuration order; an expired cooldown
        reads as healthy (its last error kept)."""
        now = self._clock()
        found = []
        for dep in self.deployments:
            health = self._health[dep.name]
            if health.state != HEALTHY and health.available(now):
                health = Health(HEALTHY, health.until, None, health.error)
            found.append((dep, health))
        return found

    def unavailable(self, model: str | None, allowed: tuple[str, ...] = ()) -> GatewayError:
        """The error for a call none of whose deployments is available now."""
        eligible = [d for d in self._serving(model) if not (allowed and d.name not in allowed)]
        return self._all_set_aside(eligible or list(self.deployments), self._clock())

    def _all_set_aside(self, eligible: Sequence[Deployment], now: float) -> GatewayError:
        states = [self._health[d.name] for d in eligible]
        wait = max(1, math.ceil(min(h.until for h in states) - now))
        retry = ((b"retry-after", str(wait).encode()),)
        if any(h.error == RATE_LIMITED for h in states):
            return GatewayError(
                429,
                f"every {self.provider} deployment for this call is rate limited; "
                f"retry in {wait} s",
                "rate_limit_error",
                "deployments_rate_limited",
                retry,
            )
        return GatewayError(
            503,
            f"no {self.provider} deployment for this call is available; retry in {wait} s",
            "service_unavailable",
            "no_deployment_available",
            retry,
        )


def _rendezvous(deployments: Sequence[Deployment], session: bytes) -> Deployment:
    """The deployment with the highest weighted rendezvous score for ``session``: the
    same in every process, and only the sessions of a deployment set aside move."""
    best = deployments[0]
    best_score = -math.inf
    for dep in deployments:
        digest = blake2b(session + b"\0" + dep.name.encode(), digest_size=8).digest()
        unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 2)  # in (0, 1)
        score = -dep.weight / math.log(unit)
        if score > best_score:
            best, best_score = dep, score
    return best


def _no_model(provider: str, model: str | None) -> GatewayError:
    return GatewayError(
        400,
        f"no {provider} deployment serves model {model!r}",
        "invalid_request_error",
        "model_not_served",
    )


def _not_allowed(provider: str) -> GatewayError:
    return GatewayError(
        403,
        f"this key may not reach any {provider} deployment that serves this call",
        "permission_error",
        "deployment_not_allowed",
    )
