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
from time import perf_counter, time

from passgate.asgi import CLOSE_CONNECTION
from passgate.errors import GatewayError, bad_gateway, gateway_timeout, send_error, too_large
from passgate.exchange import Exchange, new_call_id
from passgate.providers.base import Provider
from passgate.proxy.body import BODY_TOO_LARGE, Body, BodyPolicy, ClientGone, read_body
from passgate.proxy.caller_key import caller_key, take_query_key
from passgate.proxy.connection import UpstreamConnectError, UpstreamError
from passgate.proxy.headers import not_forwarded, upstream_request_headers
from passgate.proxy.hooks import Pipeline
from passgate.proxy.paths import sub_path
from passgate.proxy.response import IDLE_MESSAGE, ResponseRelay
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
}
_KEY_SLOT = 6
_READ_SLOTS = 7
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
    ) -> None:
        self._prefix = prefix
        self._provider = provider
        spec = provider.spec
        self._read = {**_READ, **dict.fromkeys(spec.caller_key_headers, _KEY_SLOT)}
        self._key_query = spec.caller_key_query
        self._not_forwarded = not_forwarded(spec.caller_key_headers)
        self._upstream = upstream
        self._pipeline = pipeline
        self._policy = policy
        self._first_byte_timeout = first_byte_timeout
        self._metering = pipeline.metering
        self._responder = ResponseRelay(
            pipeline.metering, idle_timeout, provider.spec.correlation_headers
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        found: list[bytes | None] = [None] * _READ_SLOTS
        read = self._read
        for name, value in scope["headers"]:
            slot = read.get(name)
            if slot is not None:
                found[slot] = value
        authorization, content_type, length, request_id, end_user, tags, alt_key = found
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
            )
        except GatewayError as err:
            ex.status = err.status
            ex.error = err.message
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
        ex.upstream_path = (provider.base_path + api_path).decode("latin-1")
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
        for guard in self._pipeline.guards:
            await guard.admit(ex)
        await self._forward(ex, scope, receive, send, body, content_length)

    async def _forward(
        self, ex: Exchange, scope: Scope, receive: Receive, send: Send, body: Body, length: int
    ) -> None:
        query = ex.query
        target = ex.upstream_path
        if query:
            target += "?" + query.decode("latin-1")
        headers = upstream_request_headers(
            scope["headers"], self._provider.credential, self._not_forwarded
        )
        task = asyncio.current_task()
        assert task is not None
        # A streamed request body is still being read while it is written upstream:
        # receive() must not be called to watch for a disconnect until the upstream answered.
        watch = CallWatch(task, receive, _WATCH_CLIENT_AFTER, armable=isinstance(body, bytes))
        watch.deadline(self._first_byte_timeout, FIRST_BYTE)
        response: UpstreamResponse | None = None
        try:
            try:
                response = await self._upstream.request(
                    self._provider.origin,
                    ex.method,
                    target,
                    headers,
                    body,
                    length if length >= 0 else None,
                )
            except UpstreamConnectError as exc:
                raise bad_gateway(f"cannot reach the upstream: {exc}") from exc
            except UpstreamError as exc:
                if ex.error == BODY_TOO_LARGE:
                    raise _body_too_large() from exc
                raise bad_gateway(f"upstream connection failed: {exc}") from exc
            watch.clear_deadline()
            ex.first_byte = perf_counter()
            ex.status = response.status
            watch.body_read()
            if await self._responder.relay(ex, response, send, ex.request_id.encode(), watch):
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


def _log_defect(what: str, exc: BaseException) -> None:
    """Log a failure of the gateway's own code with its type and stack, never its message:
    an exception's text can carry request data (a header, a body excerpt)."""
    frames = traceback.extract_tb(exc.__traceback__)
    stack = "\n".join(f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames)
    log.error("%s failed: %s\n%s", what, type(exc).__name__, stack)
