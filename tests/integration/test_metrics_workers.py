"""``/metrics`` of a gateway with two workers: every scrape returns the instance's totals.

Each worker counts into its own series file; whichever worker answers a scrape sums them
all. The calls are spread until both workers have served some (read from their series
files), so a scrape answered from one worker's counts alone could not show the totals.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from passgate.observability.series import SUFFIX, SeriesReader
from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.http import request

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = b'{"model":"mistral-small-latest","messages":[{"role":"user","content":"hi"}]}'
LABELS = {
    "provider": "mistral",
    "route_family": "chat",
    "model": "mistral-small-latest",
    "key_alias": "master",
    "status_class": "2xx",
}
SCRAPES = 12


def _metrics_dir(gateway: GatewayProcess) -> Path:
    """The directory of the workers' series files (each worker has its own mapped)."""
    for worker in _workers(gateway):
        for mapped in worker.memory_maps():
            if mapped.path.endswith(SUFFIX):
                return Path(mapped.path).parent
    raise AssertionError("no worker maps a series file")


def _requests_per_file(directory: Path) -> list[float]:
    """Chat calls counted in each worker's series file."""
    counts = []
    for path in sorted(directory.glob("*" + SUFFIX)):
        reader = SeriesReader.open(path)
        assert reader is not None
        counts.append(
            sum(
                values[0]
                for series, values in reader.series()
                if series.name == "passgate_requests"
                and series.labels[1] == "chat"  # (provider, family, ...)
            )
        )
    return counts


def _chat(url: str) -> float:
    reply = request(url, "POST", "/mistral/v1/chat/completions", CHAT, AUTH)
    assert reply.status == 200
    return float(reply.headers["x-passgate-cost"])


def _calls_on_both_workers(gateway: GatewayProcess, directory: Path) -> list[float]:
    """Costs of the calls made, in concurrent rounds, until each worker has served some."""
    costs: list[float] = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(20):
            costs += pool.map(_chat, [gateway.url] * 8)
            per_file = _requests_per_file(directory)
            if len(per_file) == 2 and all(per_file):
                return costs
    pytest.fail(f"the calls did not reach both workers: {_requests_per_file(directory)}")


def _scrape(url: str) -> tuple[float, float, float]:
    """Chat requests, their cost and their duration count, from one ``GET /metrics``."""
    reply = request(url, "GET", "/metrics")
    assert reply.status == 200
    found = {"requests": 0.0, "cost": 0.0, "durations": 0.0}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            if sample.name == "passgate_requests_total" and sample.labels == LABELS:
                found["requests"] += sample.value
            elif sample.name == "passgate_cost_usd_total" and sample.labels == {
                "provider": "mistral",
                "model": LABELS["model"],
                "key_alias": "master",
            }:
                found["cost"] += sample.value
            elif sample.name == "passgate_request_duration_seconds_count" and sample.labels == {
                "route_family": "chat"
            }:
                found["durations"] += sample.value
    return found["requests"], found["cost"], found["durations"]


def _counted(directory: Path, calls: int) -> None:
    """Wait until the workers have counted every call (they count once the reply is sent)."""
    deadline = time.monotonic() + 10
    while sum(_requests_per_file(directory)) < calls and time.monotonic() < deadline:
        time.sleep(0.02)


def _assert_every_scrape_shows(gateway: GatewayProcess, costs: list[float]) -> None:
    _counted(_metrics_dir(gateway), len(costs))
    for _ in range(SCRAPES):  # each on a new connection: both workers answer some
        requests, cost, durations = _scrape(gateway.url)
        assert requests == len(costs)
        assert durations == len(costs)
        assert cost == pytest.approx(sum(costs), rel=1e-9)


def _workers(gateway: GatewayProcess) -> list[psutil.Process]:
    """The server's worker processes that are running (not the spend writer, no zombie)."""
    found = []
    for child in psutil.Process(gateway.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass  # exited: a worker just killed and not yet reaped
    return found


def test_every_scrape_counts_the_calls_of_both_workers(
    upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    env = {
        "MISTRAL_API_BASE": upstream.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
    }
    gateway = start_gateway(env, 2)
    directory = _metrics_dir(gateway)
    costs = _calls_on_both_workers(gateway, directory)
    assert sum(costs) > 0
    _assert_every_scrape_shows(gateway, costs)

    # A worker killed outright is replaced; what it had counted stays in the totals.
    victim = _workers(gateway)[0]
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = {worker.pid for worker in _workers(gateway)}
        if len(pids) == 2 and victim.pid not in pids:
            break
        time.sleep(0.1)
    else:
        pytest.fail("uvicorn did not replace the killed worker")
    while request(gateway.url, "GET", "/health/liveliness").status != 200:
        time.sleep(0.05)
    _assert_every_scrape_shows(gateway, costs)
    costs += [_chat(gateway.url) for _ in range(6)]
    _assert_every_scrape_shows(gateway, costs)
