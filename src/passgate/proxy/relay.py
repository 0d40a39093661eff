"""The hot path: one raw-ASGI handler that forwards a call and streams the answer back.

It sits below any web framework on purpose (the benchmark decided): one pass over
the headers, no per-request objects beyond the ``Exchange``, one shared upstream
pool. HTTP parsing and framing stay with libraries: uvicorn/httptools on the client
side; upstream, aiohttp's ``StreamWriter`` frames requests and httptools parses answers
(``passgate.proxy.upstream``).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from functools import partial
from time import perf_counter, time

from passgate.asgi import CLOSE_CONNECTION
from passgate.config import DEFAULT_DEPLOYMENT
from passgate.errors import GatewayError, bad_gateway, gateway_timeout, send_error, too_large
from passgate.exchange import Exchange, new_call_id
from passgate.providers.base import Provider
from passgate.proxy.body import BODY_TOO_LARGE, Body, BodyPolicy, ClientGone, read_body
from passgate.proxy.caller_key import caller_key, take_query_key
from passgate.proxy.connection import UpstreamConnectError, UpstreamError
from passgate.proxy.deployments import (
    CONNECT_FAILED,
    RATE_LIMITED,
    RESET,
    Deployment,
    DeploymentPool,
)
from passgate.proxy.failover import FailoverPolicy, verdict
from passgate.proxy.headers import not_forwarded, upstream_request_headers
from passgate.proxy.hooks import Pipeline
from passgate.proxy.paths import sub_path
from passgate.proxy.response import IDLE_MESSAGE, ResponseRelay, deployment_headers
from passgate.proxy.routing import FREE, DeploymentRouter, Route
from passgate.proxy.upstream import Upstream, UpstreamResponse
from passgate.proxy.watch import FIRST_BYTE, IDLE, CallWatch
from passgate.request_id import SANE_REQUEST_ID as _REQUEST_ID
from passgate.types import Receive, Scope, Send

log = logging.getLogger("passgate.relay")

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Calls that end sooner never start the task that watches for a client disconnect.
_WATCH_CLIENT_AFTER = 0.05
# The request headers the relay reads (ASGI names are lowercase), each to its slot: one
# dict look-up per header instead of a chain of comparisons. The provider adds the headers
# its callers may present a gateway key in (``caller_key_headers``), to the key's slot.
_READ = {
    b"authorization": 0,
    b"content-type": 1,
    b"content-length": 2,
    b"x-request-id": 3,
    b"x-end-user-id": 4,
    b"x-litellm-end-user-id": 4,
    b"x-passgate-tags": 5,
    b"x-passgate-deployment": 6,
    b"x-passgate-session-id": 7,
}
_KEY_SLOT = 8
_READ_SLOTS = 9
_INTERNAL = "internal error in the gateway"


class Relay:
    """Forwards ``{prefix}/{path}`` to one provider through the feature pipeline."""

    def __init__(
        self,
        prefix: bytes,
        provider: Provider,
        upstream: Upstream,
        pipeline: Pipeline,
        policy: BodyPolicy,
        first_byte_timeout: float,
        idle_timeout: float,
        router: DeploymentRouter | None = None,
        failover: FailoverPolicy | None = None,
    ) -> None:
        """``provider`` alone is a pool of one deployment; ``router`` routes over several."""
        self._prefix = prefix
        self._provider = provider
        spec = provider.spec
        if router is None:
            only = Deployment(DEFAULT_DEPLOYMENT, provider, 1.0, None, True)
            router = DeploymentRouter(spec, DeploymentPool(provider.name, (only,)))
        self._router = router
        self._pool = router.pool
        self._failover = failover or FailoverPolicy()
        self._read = {**_READ, **dict.fromkeys(spec.caller_key_headers, _KEY_SLOT)}
        self._key_query = spec.caller_key_query
        self._not_forwarded = not_forwarded(spec.caller_key_headers)
        self._upstream = upstream
        self._pipeline = pipeline
        self._policy = policy
        self._first_byte_timeout = first_byte_timeout
        self._metering = pipeline.metering
        self._single = self._pool.single
        self._only = self._pool.deployments[0]
        self._responder = ResponseRelay(
            pipeline.metering,
            idle_timeout,
            provider.spec.correlation_headers,
            name_deployment=not self._single,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        found: list[bytes | None] = [None] * _READ_SLOTS
        read = self._read
        for name, value in scope["headers"]:
            slot = read.get(name)
            if slot is not None:
                found[slot] = value
        authorization, content_type, length, request_id, end_user, tags, pin, session, alt_key = (
            found
        )
        content_length = -1 if length is None else int(length)
        call_id = new_call_id()
        if request_id is None or not _REQUEST_ID.match(request_id):
            request_id = call_id.encode()
        raw_path: bytes = scope["raw_path"] or scope["path"].encode()
        ex = Exchange(
            request_id=request_id.decode(),
            method=scope["method"],
            route=raw_path.decode("latin-1"),
            upstream_path="",
            provider=self._provider.name,
            start_time=time(),
            start=start,
            call_id=call_id,
        )
        try:
            await self._handle(
                ex,
                scope,
                receive,
                send,
                raw_path,
                authorization or alt_key,
                content_type,
                content_length,
                end_user,
                tags,
                pin,
                session,
            )
        except GatewayError as err:
            ex.status = err.status
            ex.error = err.message
            if ex.attempts and not self._single:
                err.headers = (*err.headers, *deployment_headers(ex))
            await send_error(send, err, request_id)
        except ClientGone:
            ex.interrupted = True
            ex.error = "client disconnected before the request body was read"
        except Exception as exc:
            # A defect, not a fault of the call or the upstream: logged once, and answered
            # here so that it never reaches the server as an exception.
            _log_defect(f"relaying call {ex.call_id}", exc)
            ex.error = _INTERNAL
            if await _answer_failure(scope, send, request_id):
                ex.status = 500
            else:
                ex.interrupted = True  # the client's response was cut
        finally:
            await self._ended(ex)

    async def _ended(self, ex: Exchange) -> None:
        """The call's last phases: its cost settled, then every cleanup (always, each on its
        own), then the best-effort observers."""
        ex.end = perf_counter()
        pipeline = self._pipeline
        if self._metering is not None:
            try:
                self._metering.settle(ex)
            except Exception as exc:
                _log_defect(f"settling call {ex.call_id}", exc)
        for feature in pipeline.cleanups:
            try:
                await feature.cleanup(ex)
            except Exception as exc:
                _log_defect(f"cleanup {type(feature).__name__} of call {ex.call_id}", exc)
        for observer in pipeline.observers:
            try:
                await observer.finished(ex)
            except Exception as exc:
                _log_defect(f"observer {type(observer).__name__} of call {ex.call_id}", exc)

    async def _handle(
        self,
        ex: Exchange,
        scope: Scope,
        receive: Receive,
        send: Send,
        raw_path: bytes,
        authorization: bytes | None,
        content_type: bytes | None,
        content_length: int,
        end_user: bytes | None,
        tags: bytes | None,
        pin: bytes | None,
        session: bytes | None,
    ) -> None:
        if scope["method"] not in _METHODS:
            raise GatewayError(
                405,
                f"method {scope['method']} is not supported",
                "invalid_request_error",
                "method_not_allowed",
            )
        sub = sub_path(raw_path, self._prefix)
        provider = self._provider
        api_path = provider.api_path(sub)
        ex.api_path = api_path.decode("latin-1")
        # the only deployment's; with several, each attempt sets its own
        ex.upstream_path = (self._only.provider.base_path + api_path).decode("latin-1")
        query: bytes = scope["query_string"]
        token = caller_key(authorization)
        if self._key_query is not None and query:
            query, in_query = take_query_key(query, self._key_query)
            if token is None:
                token = in_query
        ex.query = query
        principal = await self._pipeline.authenticator.authenticate(token, ex)
        ex.principal = principal
        ex.end_user = end_user.decode("utf-8", "replace") if end_user else principal.end_user_id
        if tags:
            ex.tags.extend(
                t.strip() for t in tags.decode("utf-8", "replace").split(",") if t.strip()
            )
        body = await read_body(
            ex,
            receive,
            content_type,
            content_length,
            self._policy,
            want_model=bool(principal.models),
        )
        spec = provider.spec
        # The model a path names is the one the upstream runs (models/M:generateContent):
        # it wins over a body's "model", which could name another, allowed, cheaper one.
        path_model = spec.model_from_path(ex.api_path)
        if path_model is not None:
            ex.info.model = path_model
        ex.model = ex.info.model
        ex.stream = spec.streamed(ex.api_path, ex.info)
        ex.metered = spec.metered(ex.method, ex.api_path, ex.info)
        # one deployment and nothing pinned: nothing to decide (the common case, kept cheap)
        route = FREE if self._single and pin is None else await self._router.route(ex, pin, session)
        for guard in self._pipeline.guards:
            await guard.admit(ex)
        await self._forward(ex, scope, receive, send, body, content_length, route)

    async def _forward(
        self,
        ex: Exchange,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: Body,
        length: int,
        route: Route,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        # A streamed request body is still being read while it is written upstream:
        # receive() must not be called to watch for a disconnect until the upstream answered.
        watch = CallWatch(task, receive, _WATCH_CLIENT_AFTER, armable=isinstance(body, bytes))
        watch.deadline(self._first_byte_timeout, FIRST_BYTE)
        response: UpstreamResponse | None = None
        try:
            if self._single:
                response = await self._request_only(ex, scope, body, length)
            else:
                response = await self._attempts(ex, scope, body, length, route)
            watch.clear_deadline()
            ex.first_byte = perf_counter()
            ex.status = response.status
            watch.body_read()
            keep = (
                partial(self._router.remember, ex)
                if route.capture and response.status < 300
                else None
            )
            if await self._responder.relay(ex, response, send, ex.request_id.encode(), watch, keep):
                _close_unfinished(scope)
        except asyncio.CancelledError:
            reason = watch.caught()
            if reason is None:
                raise
            if reason == FIRST_BYTE:
                if ex.error == BODY_TOO_LARGE:
                    raise _body_too_large() from None
                raise gateway_timeout(
                    "the upstream did not answer within the gateway's timeout"
                ) from None
            if reason == IDLE:  # with the answer's head in, none of its body sent
                ex.interrupted = True
                raise gateway_timeout(IDLE_MESSAGE) from None
            ex.interrupted = True
            ex.error = "client disconnected"
        finally:
            watch.stop()
            if response is not None:
                response.close()

    async def _request_only(
        self, ex: Exchange, scope: Scope, body: Body, length: int
    ) -> UpstreamResponse:
        """The answer of a provider's only deployment, whatever it is."""
        only = self._only
        provider = only.provider
        ex.deployment = only.name
        ex.attempts = 1
        target = ex.upstream_path
        if ex.query:
            target += "?" + ex.query.decode("latin-1")
        headers = upstream_request_headers(
            scope["headers"], provider.credential, self._not_forwarded
        )
        try:
            return await self._upstream.request(
                provider.origin, ex.method, target, headers, body, length if length >= 0 else None
            )
        except UpstreamError as exc:
            raise _upstream_failure(ex, exc) from exc

    async def _attempts(
        self, ex: Exchange, scope: Scope, body: Body, length: int, route: Route
    ) -> UpstreamResponse:
        """The answer of the first deployment that gives one the caller should get: a call
        moves on (``passgate.proxy.failover``) only while nothing of it reached the client,
        and a body streamed upstream is never sent twice."""
        pool = self._pool
        policy = self._failover
        fixed = route.fixed
        # one attempt when there is nowhere else to go, or the body cannot be sent again
        most = (
            1
            if fixed is not None or pool.single or not isinstance(body, bytes)
            else (policy.max_attempts)
        )
        principal = ex.principal
        allowed = principal.allowed_deployments if principal is not None else ()
        api_path = ex.api_path
        target_query = "?" + ex.query.decode("latin-1") if ex.query else ""
        tried: list[Deployment] = []
        dep = fixed or pool.pick(ex.model, allowed, route.session)
        while True:
            assert dep is not None
            tried.append(dep)
            ex.deployment = dep.name
            ex.attempts = len(tried)
            provider = dep.provider
            ex.upstream_path = provider.base_path.decode("latin-1") + api_path
            headers = upstream_request_headers(
                scope["headers"], provider.credential, self._not_forwarded
            )
            error: str
            answer: UpstreamResponse | None = None
            failure: GatewayError | None = None
            try:
                answer = await self._upstream.request(
                    provider.origin,
                    ex.method,
                    ex.upstream_path + target_query,
                    headers,
                    body,
                    length if length >= 0 else None,
                )
            except UpstreamError as exc:
                failure = _upstream_failure(ex, exc)
                if failure.status == 413:  # the streamed body passed the limit
                    raise failure from exc
                error = CONNECT_FAILED if isinstance(exc, UpstreamConnectError) else RESET
            else:
                found = verdict(answer.status)
                if found is None:
                    return answer
                error = found
            pool.set_aside(dep, error, policy.wait(error, answer.raw_headers if answer else ()))
            more = len(tried) < most
            nxt = pool.pick(ex.model, allowed, route.session, tried) if more else None
            if nxt is None:
                if answer is None:
                    assert failure is not None
                    raise failure
                if error == RATE_LIMITED and more:
                    # every deployment that could answer is set aside: say when to come back
                    answer.close()
                    raise pool.unavailable(ex.model, allowed)
                return answer
            if answer is not None:
                answer.close()
            delay = policy.delay(len(tried), error)
            if delay:
                await asyncio.sleep(delay)
            dep = nxt


async def _answer_failure(scope: Scope, send: Send, request_id: bytes) -> bool:
    """Send the gateway's 500, or cut the connection when a response had already begun;
    whether the 500 went out."""
    try:
        await send_error(
            send, GatewayError(500, _INTERNAL, "internal_error", "internal_error"), request_id
        )
    except Exception:  # the response had started (or the connection broke): cut it
        _close_unfinished(scope)
        return False
    return True


def _close_unfinished(scope: Scope) -> None:
    """Close the client's connection mid-response, when the server offers a way to."""
    extension = (scope.get("extensions") or {}).get(CLOSE_CONNECTION)
    if extension is not None:
        extension["close"]()
    # Otherwise the server closes a connection whose response the app left unfinished.


def _body_too_large() -> GatewayError:
    return too_large(BODY_TOO_LARGE)


def _upstream_failure(ex: Exchange, exc: UpstreamError) -> GatewayError:
    """The caller's error for an attempt that got no answer: 413 when the body being
    streamed passed the limit meanwhile, else 502."""
    if isinstance(exc, UpstreamConnectError):
        return bad_gateway(f"cannot reach the upstream: {exc}")
    if ex.error == BODY_TOO_LARGE:
        return _body_too_large()
    return bad_gateway(f"upstream connection failed: {exc}")


def _log_defect(what: str, exc: BaseException) -> None:
    """Log a failure of the gateway's own code with its type and stack, never its message:
    an exception's text can carry request data (a header, a body excerpt)."""
    frames = traceback.extract_tb(exc.__traceback__)
    stack = "\n".join(f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames)
    log.error("%s failed: %s\n%s", what, type(exc).__name__, stack)
