"""Usage readers for compressed responses.

The relay passes ``Content-Encoding: gzip`` bodies through untouched (the client
asked for them), so the tee sees compressed bytes. ``decoded`` inflates a copy
for the reader, in bounded steps: a small body that inflates to gigabytes costs
CPU, never memory, since the reader behind keeps only what it needs.
"""

from __future__ import annotations

import zlib

from passgate.accounting.usage import FixedUsageReader
from passgate.exchange import Usage
from passgate.proxy.hooks import UsageReader

_STEP = 256 * 1024  # most output inflated per call
_AUTO_HEADER = zlib.MAX_WBITS | 32  # accepts both gzip and zlib framing
_INFLATED = frozenset({b"gzip", b"x-gzip", b"deflate"})


class InflatingReader:
    """Feeds the inflated copy of a gzip or deflate body to another reader."""

    __slots__ = ("_broken", "_decoder", "_inner")

    def __init__(self, inner: UsageReader) -> None:
        self._inner = inner
        self._decoder = zlib.decompressobj(_AUTO_HEADER)
        self._broken = False

    def feed(self, chunk: bytes) -> None:
        """Inflate a chunk and pass the output on; corrupt data ends the reading."""
        if self._broken or self._decoder.eof:
            return
        try:
            data = self._decoder.decompress(chunk, _STEP)
            while data:
                self._inner.feed(data)
                tail = self._decoder.unconsumed_tail
                data = self._decoder.decompress(tail, _STEP) if tail else b""
        except zlib.error:
            self._broken = True

    def result(self) -> tuple[Usage | None, str | None]:
        """What the reader behind saw of the inflated body."""
        return self._inner.result()


def decoded(reader: UsageReader | None, content_encoding: bytes | None) -> UsageReader | None:
    """``reader`` for a body with this ``Content-Encoding``: identity is read as is, gzip
    and deflate are inflated; a coding we cannot undo (br, zstd) yields no usage."""
    if reader is None or not content_encoding or isinstance(reader, FixedUsageReader):
        return reader
    codings = [c.strip().lower() for c in content_encoding.split(b",")]
    codings = [c for c in codings if c and c != b"identity"]
    if not codings:
        return reader
    if len(codings) == 1 and codings[0] in _INFLATED:
        return InflatingReader(reader)
    return FixedUsageReader(None)
