"""Reading py-spy's raw output (`--format raw --threads --function`): where the time went.

Each raw line is `thread (TID): NAME;frame;frame;... COUNT`, outermost frame first. A frame
is `function (path:line)`. This module sums samples per thread, per leaf function (self),
per function anywhere on the stack (inclusive), and per part of the gateway (category).
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# (category, pattern) tried on each frame from the leaf outwards; the first match wins.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("event loop (uvloop, in C: epoll, socket reads, callbacks)", r"^(Runner\.run|asyncio_run) "),
    ("spend writer (rows, SQLAlchemy, aiosqlite)", r"SpendWriter|spend_row|sqlalchemy/|aiosqlite/"),
    ("Prometheus metrics observer", r"Metrics\.finished|prometheus_client/|families\.py"),
    ("access log", r"RequestLogger|observability/logs\.py|access_fields|logging/"),
    ("limits", r"passgate/limits/"),
    ("metering (usage readers, pricing)", r"passgate/accounting/|_read_usage|_cost_headers"),
    ("auth and guards", r"passgate/auth/"),
    (
        "upstream client (proxy/upstream, connection, pool; aiohttp framing)",
        r"passgate/proxy/(upstream|connection|pool)\.py|aiohttp/|multidict/|yarl/|httptools/",
    ),
    ("uvicorn (httptools protocol)", r"uvicorn/"),
    ("relay (passgate/proxy, api/gateway)", r"passgate/proxy/|passgate/api/gateway|exchange\.py"),
    ("asyncio (tasks, futures, events)", r"asyncio/"),
)
NO_FRAME = "no Python frame (native code)"
# Frames every sample of the main thread sits under: ranked by inclusive samples they say nothing.
_ROOTS = re.compile(r"^(<module>|main|serve|run|Server\.run|asyncio_run|Runner\.run) \(")
_THREAD = re.compile(r"^thread \((\d+)\):? ?(.*)$")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")


@dataclass
class Profile:
    """Samples of one thread, summed three ways."""

    samples: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)


def _short(frame: str) -> str:
    """`function (package/module.py)`: the path cut to its last two parts."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = "/".join(match["path"].split("/")[-2:])
    return f"{match['function']} ({path})"


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if re.search(pattern, frame):
                return name
    return NO_FRAME


def read(path: Path) -> dict[str, Profile]:
    """Profiles by thread label (`NAME (TID)`) from one raw py-spy file."""
    threads: dict[str, Profile] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        label = "process"
        match = _THREAD.match(frames[0])
        if match is not None:
            label = f"{match[2] or 'thread'} ({match[1]})"
            frames = frames[1:]
        samples = int(count)
        profile = threads.setdefault(label, Profile())
        profile.samples += samples
        profile.categories[_category(frames)] += samples
        if not frames:
            profile.self_time[NO_FRAME] += samples
            continue
        profile.self_time[_short(frames[-1])] += samples
        on_stack = {_short(frame) for frame in frames[:-1] if not _ROOTS.match(frame)}
        for frame in on_stack | {_short(frames[-1])}:
            profile.inclusive[frame] += samples
    return threads
