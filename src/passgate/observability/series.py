"""A process's metric series in mapped memory, and their sum over every process of an instance.

Each process counts into an array of doubles (``SeriesFile.values``) in a file of its own,
in a directory the server makes for the instance; ``/metrics``, whichever worker answers
it, reads every file there (``SeriesDirectory``) and adds them up. A count is a store into
mapped memory: no system call, no lock (one event loop per process writes its file). A
file outlives its process, so the counts of a worker that died stay in the totals and no
counter goes down, which Prometheus would take for a reset. Without a directory (an app
built outside a server: tests, embedding) the array is anonymous memory that only its own
process reads.

A file holds a header (magic, index bytes used, pid, slot capacity), the values, then the
index: one entry per series, its length and the JSON ``[name, labels, first slot, width]``.
An entry is complete before the index length that publishes it is stored, so a reader in
another process never parses half of one.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"pgseries"
SUFFIX = ".series"
SLOTS = 1 << 16  # doubles per process; a histogram series takes its buckets plus one
INDEX_BYTES = 1 << 22
_HEADER = struct.Struct("=8sQQQ")  # magic, index bytes used, pid, slots
_USED = struct.Struct("=Q")
_USED_AT = 8
_LENGTH = struct.Struct("=I")
_VALUES_AT = 64

Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a file: its family name, label values and slots."""

    name: str
    labels: Labels
    base: int
    width: int


def _file_size(slots: int, index_bytes: int) -> int:
    return _VALUES_AT + slots * 8 + index_bytes


class SeriesFile:
    """This process's series; count with ``values[slot] += amount``."""

    def __init__(
        self, directory: Path | None = None, slots: int = SLOTS, index_bytes: int = INDEX_BYTES
    ) -> None:
        size = _file_size(slots, index_bytes)
        self.path: Path | None = None
        if directory is None:
            self._map = mmap.mmap(-1, size)
        else:
            # a unique name: a restarted worker may be given the pid of one that died
            fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=SUFFIX, dir=directory)
            try:
                os.ftruncate(fd, size)  # sparse: only the pages counted into take memory
                self._map = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            self.path = Path(name)
        _HEADER.pack_into(self._map, 0, MAGIC, 0, os.getpid(), slots)
        self.values = memoryview(self._map)[_VALUES_AT : _VALUES_AT + slots * 8].cast("d")
        self._slots = slots
        self._next = 0
        self._index_at = _VALUES_AT + slots * 8
        self._index_end = size
        self._used = 0

    def allocate(self, name: str, labels: Labels, width: int) -> int | None:
        """The first of ``width`` new zeroed slots for this series; None when the file is full."""
        if self._next + width > self._slots:
            return None
        entry = json.dumps([name, list(labels), self._next, width]).encode()
        at = self._index_at + self._used
        if at + _LENGTH.size + len(entry) > self._index_end:
            return None
        base = self._next
        self._next += width
        _LENGTH.pack_into(self._map, at, len(entry))
        self._map[at + _LENGTH.size : at + _LENGTH.size + len(entry)] = entry
        self._used += _LENGTH.size + len(entry)
        _USED.pack_into(self._map, _USED_AT, self._used)  # publishes the entry
        return base

    def reader(self) -> SeriesReader:
        """A reader of this process's own series (no file needed)."""
        return SeriesReader(self._map, own=True)


class SeriesReader:
    """Reads the series of one file (or of this process's own map); parses each entry once."""

    def __init__(self, buffer: mmap.mmap, *, own: bool = False) -> None:
        self._map = buffer
        self._own = own
        magic, _, self.pid, slots = _HEADER.unpack_from(buffer, 0)
        # a file just made may not have its header yet: read again at the next scrape
        self.valid = magic == MAGIC and len(buffer) >= _VALUES_AT + slots * 8
        if not self.valid:
            slots = 0
        self._values = memoryview(buffer)[_VALUES_AT : _VALUES_AT + slots * 8].cast("d")
        self._index_at = _VALUES_AT + slots * 8
        self._parsed = 0
        self._series: list[Series] = []

    @classmethod
    def open(cls, path: Path) -> SeriesReader | None:
        """A reader of another process's file, or None if it cannot be mapped."""
        try:
            with path.open("rb") as file:
                buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        if len(buffer) < _VALUES_AT:
            return None
        return cls(buffer)

    def alive(self) -> bool:
        """Whether the process that writes this file is still running."""
        if self._own:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def series(self) -> Iterator[tuple[Series, list[float]]]:
        """Every series published so far, with its current values."""
        if not self.valid:
            return
        (used,) = _USED.unpack_from(self._map, _USED_AT)
        while self._parsed < used:
            at = self._index_at + self._parsed
            (length,) = _LENGTH.unpack_from(self._map, at)
            start = at + _LENGTH.size
            name, labels, base, width = json.loads(self._map[start : start + length])
            self._series.append(Series(name, tuple(labels), base, width))
            self._parsed += _LENGTH.size + length
        values = self._values
        for entry in self._series:
            yield entry, [float(value) for value in values[entry.base : entry.base + entry.width]]


class SeriesDirectory:
    """Every series file of an instance (one per process, living or dead), read at each scrape."""

    def __init__(self, directory: Path | None, own: SeriesFile) -> None:
        self._directory = directory
        self._own_path = own.path
        self._own = own.reader()
        self._readers: dict[str, SeriesReader] = {}

    def readers(self) -> Iterator[SeriesReader]:
        """This process's reader, then one per other file found in the directory."""
        yield self._own
        if self._directory is None:
            return
        try:
            entries = list(os.scandir(self._directory))
        except OSError:
            return
        for entry in entries:
            if not entry.name.endswith(SUFFIX) or Path(entry.path) == self._own_path:
                continue
            reader = self._readers.get(entry.name)
            if reader is None or not reader.valid:
                reader = SeriesReader.open(Path(entry.path))
                if reader is None:
                    continue
                self._readers[entry.name] = reader
            yield reader
