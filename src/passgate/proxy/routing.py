"""Which deployment a call goes to before the pool's draw: a pin, a resource's home, the
primary for listings, or a session.

- ``x-passgate-deployment: NAME`` pins a call to one deployment (the master key, and a
  virtual key whose ``allowed_deployments`` include it or are empty);
- a call naming a resource (a file, a batch job, an agent ...) goes to the deployment that
  created it, known from the create call's answer (``ResourceHomes``);
- a call listing resources goes to the primary deployment;
- ``x-passgate-session-id: ID`` keeps a session on one deployment while it is healthy.

A pinned call, and one about a resource, goes to its deployment even while that one cools
down: there is nowhere else it can be answered.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from passgate.errors import GatewayError, bad_request
from passgate.exchange import Exchange
from passgate.providers.base import ProviderSpec
from passgate.proxy.deployments import Deployment, DeploymentPool

log = logging.getLogger("passgate.deployments")

_INFLATED = frozenset({b"gzip", b"x-gzip", b"deflate"})
_MOST_INFLATED = 4 * 1024 * 1024  # a create call's answer is small; more is not read


def _plain(body: bytes, encoding: bytes | None) -> bytes | None:
    """``body`` without its content coding (gzip and deflate undone), else None."""
    coding = (encoding or b"").strip().lower()
    if not coding or coding == b"identity":
        return body
    if coding not in _INFLATED:
        return None
    try:
        return zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(body, _MOST_INFLATED)
    except zlib.error:
        return None


class ResourceHomes(Protocol):
    """Where each resource a deployment created lives, kept across restarts."""

    async def find(self, provider: str, resource_ids: Sequence[str]) -> str | None:
        """The deployment that holds the first of ``resource_ids`` it knows, else None."""
        ...

    async def remember(self, provider: str, resource_ids: Sequence[str], deployment: str) -> None:
        """Record that ``deployment`` holds each of ``resource_ids``."""
        ...


@dataclass(frozen=True, slots=True)
class Route:
    """What the router decided for one call."""

    fixed: Deployment | None = None  # the only deployment the call may go to
    session: bytes | None = None  # keeps the draw on one deployment while it is healthy
    capture: bool = False  # the answer may name new resources: read it before relaying


FREE = Route()
_PATHS_KEPT = 1024  # paths come from callers: bounded


def _not_allowed(name: str) -> GatewayError:
    return GatewayError(
        403,
        f"this key may not use deployment {name!r}",
        "permission_error",
        "deployment_not_allowed",
    )


class DeploymentRouter:
    """Routes the calls of one provider over its pool."""

    def __init__(
        self, spec: ProviderSpec, pool: DeploymentPool, homes: ResourceHomes | None = None
    ) -> None:
        self.spec = spec
        self.pool = pool
        # resources are followed only where there is more than one deployment to be on
        self._homes = None if pool.single else homes
        # (method, path) -> (a listing, a create) for paths naming no resource (``_path``)
        self._paths: dict[tuple[str, str], tuple[bool, bool]] = {}

    async def route(self, ex: Exchange, pin: bytes | None, session: bytes | None) -> Route:
        """The route of ``ex`` (authenticated, its body inspected)."""
        pool = self.pool
        principal = ex.principal
        allowed = principal.allowed_deployments if principal is not None else ()
        if pin is not None:
            name = pin.decode("latin-1").strip()
            dep = pool.named(name)
            if dep is None:
                raise bad_request(
                    f"no {pool.provider} deployment is named {name!r} (x-passgate-deployment)"
                )
            if allowed and name not in allowed:
                raise _not_allowed(name)
            return Route(dep, None, self._homes is not None and self._path(ex)[2])
        homes = self._homes
        if homes is None:
            return FREE if session is None else Route(None, session)
        spec = self.spec
        method, path = ex.method, ex.api_path
        named, lists, creates = self._path(ex)
        ids = [] if named is None else [named]
        if ex.info.body is not None:
            ids.extend(spec.referenced_resources(method, path, ex.info.body))
        if ids:
            home = await homes.find(pool.provider, ids)
            if home is not None:
                dep = pool.named(home)
                if dep is not None:
                    if allowed and home not in allowed:
                        raise _not_allowed(home)
                    return Route(dep, None, creates)
                log.warning(
                    "a %s resource lives on deployment %r, which is no longer configured",
                    pool.provider,
                    home,
                )
        if lists:
            primary = pool.primary
            if allowed and primary.name not in allowed:
                raise _not_allowed(primary.name)
            return Route(primary, None, False)
        if session is None and not creates:
            return FREE
        return Route(None, session, creates)

    def _path(self, ex: Exchange) -> tuple[str | None, bool, bool]:
        """What the call's path says: the resource it names, whether it lists resources,
        whether it may create some. Kept for paths naming none: the same few come again and
        again, where each path naming a resource is its own."""
        key = (ex.method, ex.api_path)
        known = self._paths.get(key)
        if known is not None:
            return None, known[0], known[1]
        spec = self.spec
        named = spec.path_resource(*key)
        lists, creates = spec.lists_resources(*key), spec.creates_resources(*key)
        if named is None and len(self._paths) < _PATHS_KEPT:
            self._paths[key] = (lists, creates)
        return named, lists, creates

    async def remember(self, ex: Exchange, body: bytes, encoding: bytes | None) -> None:
        """Record the deployment of the resources a successful answer (``body`` in its
        ``Content-Encoding``) introduces."""
        homes = self._homes
        deployment = ex.deployment
        if homes is None or deployment is None:
            return
        plain = _plain(body, encoding)
        if plain is None:
            log.warning(
                "an answer of %s %s came in a coding the gateway cannot read (%s): the "
                "resources it created are not followed to their deployment",
                ex.method,
                ex.api_path,
                (encoding or b"").decode("latin-1"),
            )
            return
        try:
            answer = orjson.loads(plain)
        except orjson.JSONDecodeError:
            return
        ids = self.spec.created_resources(ex.method, ex.api_path, answer)
        if ids:
            await homes.remember(self.pool.provider, ids, deployment)
