"""Relaying the upstream's answer: buffered when small JSON, streamed otherwise, teed always."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from passgate.errors import GatewayError, gateway_timeout, upstream_interrupted
from passgate.exchange import Exchange, Usage
from passgate.proxy.connection import UpstreamError
from passgate.proxy.headers import client_response_headers, response_fields
from passgate.proxy.hooks import Metering, UsageReader
from passgate.proxy.upstream import UpstreamResponse
from passgate.proxy.watch import DISCONNECT, IDLE, CallWatch
from passgate.types import Message, RawHeaders, Send

log = logging.getLogger("passgate.relay")

_BUFFER_JSON = 4 * 1024 * 1024  # a priced JSON answer up to this size is read whole
_BUFFER_SMALL = 64 * 1024  # any answer up to this size goes out in one write
_IDLE_ERROR = "upstream stream idle timeout"
IDLE_MESSAGE: Final = "the upstream stopped sending its answer within the gateway's idle timeout"


def _cut_error(exc: UpstreamError) -> str:
    return f"upstream answer interrupted: {exc}"


def _interrupted(ex: Exchange, exc: UpstreamError) -> GatewayError:
    """The error for an answer broken off before any of it was sent; marks ``ex``."""
    ex.interrupted = True
    ex.error = _cut_error(exc)
    return upstream_interrupted(ex.error)


def _cost_headers(ex: Exchange, out: RawHeaders) -> None:
    """Append the call's cost and usage headers to ``out`` (those reported, in this order)."""
    if ex.cost is not None:
        out.append((b"x-passgate-cost", (b"%.10f" % ex.cost).rstrip(b"0").rstrip(b".")))
    usage: Usage | None = ex.usage
    if usage is None:
        return
    if usage.prompt_tokens is not None:
        out.append((b"x-passgate-usage-prompt-tokens", b"%d" % usage.prompt_tokens))
    if usage.completion_tokens is not None:
        out.append((b"x-passgate-usage-completion-tokens", b"%d" % usage.completion_tokens))
    if usage.cached_tokens is not None:
        out.append((b"x-passgate-usage-cached-tokens", b"%d" % usage.cached_tokens))
    if usage.pages is not None:
        out.append((b"x-passgate-usage-pages", b"%d" % usage.pages))
    if usage.audio_seconds is not None:
        out.append((b"x-passgate-usage-audio-seconds", str(usage.audio_seconds).encode()))
    if usage.characters is not None:
        out.append((b"x-passgate-usage-characters", b"%d" % usage.characters))


def deployment_headers(ex: Exchange) -> tuple[tuple[bytes, bytes], ...]:
    """The headers naming the deployment that answered and how many were tried."""
    if ex.deployment is None:
        return ()
    return (
        (b"x-passgate-deployment", ex.deployment.encode()),
        (b"x-passgate-attempts", b"%d" % ex.attempts),
    )


# the most of an answer read whole so that the resources it creates are recorded first
_BUFFER_KEEP = 1024 * 1024
Keeper = Callable[[bytes, bytes | None], Awaitable[None]]  # (body, its Content-Encoding)


class ResponseRelay:
    """Sends one upstream response to the client, feeding a usage reader on the side."""

    def __init__(
        self,
        metering: Metering | None,
        idle_timeout: float,
        correlation_headers: tuple[bytes, ...] = (),
        name_deployment: bool = False,
    ) -> None:
        """``name_deployment``: answers say which deployment gave them (a provider with
        several)."""
        self._metering = metering
        self._name_deployment = name_deployment
        self._idle = idle_timeout
        self._fields = response_fields(correlation_headers)

    async def relay(
        self,
        ex: Exchange,
        response: UpstreamResponse,
        send: Send,
        request_id: bytes,
        watch: CallWatch,
        keep: Keeper | None = None,
    ) -> bool:
        """Relay status, headers and body; fill usage, cost and the byte count on ``ex``.

        One rule, whatever the framing, for an answer the upstream breaks off (or stops
        sending) after its head: ``ex.interrupted`` is set with the error; while no byte
        of the body has reached the client a ``GatewayError`` is raised for the gateway's
        own error response; once some has, True is returned: the client's response is
        unfinished and its connection must be closed, so that the client sees it cut.

        With ``keep``, an answer of up to a MiB is read whole and given to ``keep`` before
        any of it is sent (so that a resource it creates is recorded before the caller can
        name it).
        """
        headers, upstream_id, content_type, length, encoding = client_response_headers(
            response.raw_headers, request_id, self._fields
        )
        if self._name_deployment:
            headers.extend(deployment_headers(ex))
        if upstream_id is not None:
            ex.upstream_request_id = upstream_id.decode("latin-1")
        reader: UsageReader | None = None
        if self._metering is not None and response.status < 400:
            reader = self._metering.reader(ex, content_type, encoding)
        if (
            length is not None
            and (
                length <= _BUFFER_SMALL
                or (reader is not None and b"json" in content_type and length <= _BUFFER_JSON)
            )
        ) or (keep is not None and (length is None or length <= _BUFFER_KEEP)):
            try:
                if response.arrived:  # as small answers usually are, with their head
                    body = await response.read()
                else:
                    watch.deadline(self._idle, IDLE)
                    body = await response.read()
                    watch.clear_deadline()
            except UpstreamError as exc:
                raise _interrupted(ex, exc) from exc
            if reader is not None:
                reader.feed(body)
                self._read_usage(ex, reader)
                if self._metering is not None:
                    self._metering.settle(ex)
                _cost_headers(ex, headers)
            ex.bytes_out = len(body)
            watch.stop()
            if keep is not None:
                await self._keep(keep, body, encoding)
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return False
        start: Message = {
            "type": "http.response.start",
            "status": response.status,
            "headers": headers,
        }
        try:
            started = await self._stream(ex, response, send, start, reader, watch)
        finally:
            if reader is not None:
                self._read_usage(ex, reader)
        watch.stop()
        if not ex.interrupted:
            if not started:
                await send(start)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return False
        if started:
            return True  # the client has part of the answer: only a cut connection says so
        if ex.error == DISCONNECT:
            return False  # nobody left to answer
        if ex.error == _IDLE_ERROR:
            raise gateway_timeout(IDLE_MESSAGE)
        raise upstream_interrupted(ex.error or "")

    async def _stream(
        self,
        ex: Exchange,
        response: UpstreamResponse,
        send: Send,
        start: Message,
        reader: UsageReader | None,
        watch: CallWatch,
    ) -> bool:
        """Relay the body as it arrives; whether the head went out (with the first bytes:
        until then the client can still be answered with the gateway's own error)."""
        started = False
        watch.idle_deadline(self._idle)
        try:
            async for chunk in response.chunks():
                watch.touch()
                if reader is not None:
                    reader.feed(chunk)
                if not started:
                    await send(start)
                    started = True
                ex.bytes_out += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            ex.interrupted = True
            ex.error = _cut_error(exc)
        except asyncio.CancelledError:
            reason = watch.caught()
            if reason is None:
                raise
            ex.interrupted = True
            ex.error = _IDLE_ERROR if reason == IDLE else DISCONNECT
        watch.clear_deadline()
        return started

    @staticmethod
    async def _keep(keep: Keeper, body: bytes, encoding: bytes | None) -> None:
        try:
            await keep(body, encoding)
        except Exception as exc:  # recording where a resource lives must not fail its creation
            # the type only: an exception's text may carry what the answer held
            log.error("recording the resources an answer created failed: %s", type(exc).__name__)

    def _read_usage(self, ex: Exchange, reader: UsageReader) -> None:
        usage, model = reader.result()
        ex.usage = usage
        if ex.model is None:
            ex.model = model
