"""Newline-ended messages, as the gateway's processes send them to each other."""

from __future__ import annotations


class LineSplitter:
    """Cuts the chunks read from a stream into whole lines.

    A line the chunk leaves unfinished waits in ``rest`` until the next chunk ends it.
    """

    __slots__ = ("rest",)

    def __init__(self) -> None:
        self.rest = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` ends, without their newlines."""
        lines = (self.rest + chunk).split(b"\n")
        self.rest = lines.pop()
        return lines
