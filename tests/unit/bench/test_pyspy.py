"""bench.pyspy: py-spy's raw samples summed per thread, function and part of the gateway."""

from __future__ import annotations

from pathlib import Path

from bench import pyspy

MAIN = "thread (11): MainThread"
RUNNER = "Runner.run (asyncio/runners.py:86)"
RAW = "\n".join(
    [
        f"{MAIN};run (uvicorn/main.py:1);{RUNNER} 5",
        f"{MAIN};{RUNNER};Relay._forward (passgate/proxy/relay.py:183);"
        "ClientSession._request (aiohttp/client.py:558) 3",
        f"{MAIN};{RUNNER};Relay._forward (passgate/proxy/relay.py:183);"
        "Upstream._exchange (passgate/proxy/upstream.py:140) 1",
        f"{MAIN};Relay.__call__ (passgate/proxy/relay.py:71);"
        "Metrics.finished (passgate/observability/metrics.py:219) 2",
        "thread (12): passgate-log-writer 4",
        "not a sample line",
    ]
)


def test_samples_are_summed_per_thread_function_and_part(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(RAW)
    profiles = pyspy.read(raw)
    main, writer = profiles["MainThread (11)"], profiles["passgate-log-writer (12)"]
    assert main.samples == 11 and writer.samples == 4
    assert main.self_time["Runner.run (asyncio/runners.py)"] == 5
    assert main.self_time["ClientSession._request (aiohttp/client.py)"] == 3
    assert main.inclusive["Runner.run (asyncio/runners.py)"] == 5  # only where it is the leaf
    assert "run (uvicorn/main.py)" not in main.inclusive  # under every sample: left out
    assert main.inclusive["Relay._forward (proxy/relay.py)"] == 4
    assert main.categories == {
        "event loop (uvloop, in C: epoll, socket reads, callbacks)": 5,
        "upstream client (proxy/upstream, connection, pool; aiohttp framing)": 4,
        "Prometheus metrics observer": 2,
    }
    assert writer.categories == {pyspy.NO_FRAME: 4}
