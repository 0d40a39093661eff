"""Relaying the upstream's answer: buffered when small JSON, streamed otherwise, teed always."""

from __future__ import annotations

import asyncio

from passgate.accounting.decoding import decoded
from passgate.exchange import Exchange, Usage
from passgate.proxy.connection import UpstreamError
from passgate.proxy.headers import client_response_headers
from passgate.proxy.hooks import Metering, UsageReader
from passgate.proxy.upstream import UpstreamResponse
from passgate.proxy.watch import DISCONNECT, IDLE, CallWatch
from passgate.types import RawHeaders, Send

_BUFFER_JSON = 4 * 1024 * 1024  # a priced JSON answer up to this size is read whole
_BUFFER_SMALL = 64 * 1024  # any answer up to this size goes out in one write


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


class ResponseRelay:
    """Sends one upstream response to the client, feeding a usage reader on the side."""

    def __init__(self, metering: Metering | None, idle_timeout: float) -> None:
        self._metering = metering
        self._idle = idle_timeout

    async def relay(
        self,
        ex: Exchange,
        response: UpstreamResponse,
        send: Send,
        request_id: bytes,
        watch: CallWatch,
    ) -> None:
        """Relay status, headers and body; fill usage, cost and the byte count on ``ex``."""
        headers, upstream_id, content_type, length, encoding = client_response_headers(
            response.raw_headers, request_id
        )
        if upstream_id is not None:
            ex.upstream_request_id = upstream_id.decode("latin-1")
        reader: UsageReader | None = None
        if self._metering is not None and response.status < 400:
            reader = decoded(self._metering.reader(ex, content_type), encoding)
        if length is not None and (
            length <= _BUFFER_SMALL
            or (reader is not None and b"json" in content_type and length <= _BUFFER_JSON)
        ):
            if response.arrived:  # as small answers usually are, with their head
                body = await response.read()
            else:
                watch.deadline(self._idle, IDLE)
                body = await response.read()
                watch.clear_deadline()
            if reader is not None:
                reader.feed(body)
                self._read_usage(ex, reader)
                if self._metering is not None:
                    self._metering.settle(ex)
                    ex.settled = True
                _cost_headers(ex, headers)
            ex.bytes_out = len(body)
            watch.stop()
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        try:
            await self._stream(ex, response, send, reader, watch)
        finally:
            if reader is not None:
                self._read_usage(ex, reader)
        watch.stop()
        if not ex.interrupted or length is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(
        self,
        ex: Exchange,
        response: UpstreamResponse,
        send: Send,
        reader: UsageReader | None,
        watch: CallWatch,
    ) -> None:
        watch.idle_deadline(self._idle)
        try:
            async for chunk in response.chunks():
                watch.touch()
                if reader is not None:
                    reader.feed(chunk)
                ex.bytes_out += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            ex.interrupted = True
            ex.error = f"upstream closed the stream: {exc}"
        except asyncio.CancelledError:
            reason = watch.caught()
            if reason is None:
                raise
            ex.interrupted = True
            ex.error = "upstream stream idle timeout" if reason == IDLE else DISCONNECT
        watch.clear_deadline()

    def _read_usage(self, ex: Exchange, reader: UsageReader) -> None:
        usage, model = reader.result()
        ex.usage = usage
        if ex.model is None:
            ex.model = model
