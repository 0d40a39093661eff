"""How ``passgate`` starts its workers, and what a worker carries.

``passgate`` migrates the database, then execs ``python -m passgate.runtime.server``, whose
uvicorn spawns the workers. A spawned worker first re-imports its parent's main module
(``passgate.runtime.server``), then imports the app factory it is told; every module imported
stays in the worker for good. Alembic, the key commands, the OpenTelemetry SDK (when
tracing is off) and redis (without ``REDIS_URL``) must not be among them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.fake_mistral_payloads import PROMPT_TOKENS
from tests.support.gateway import GatewayProcess
from tests.support.http import request

# A worker's imports, in the order uvicorn's spawned worker makes them: multiprocessing
# runs the parent's main module as __mp_main__ (multiprocessing.spawn does exactly this
# runpy call), then unpickles the uvicorn config whose app is the server's WorkerApp, and
# uvicorn calls it. The settings are the ones `passgate` hands over (on stdin here).
WORKER = """
import json, pickle, runpy, sys

server = runpy.run_module("passgate.runtime.server", run_name="__mp_main__", alter_sys=True)
settings = server["handed_settings"](sys.stdin.fileno())
factory = server["app_factory"](settings)
sent = pickle.dumps(server["WorkerApp"](factory, settings))
pickle.loads(sent)()
print(json.dumps({"factory": factory, "modules": sorted(sys.modules)}))
"""

HAND_OVER = """
from passgate.config import settings_json
from passgate.settings_env import load_settings
print(settings_json(load_settings()))
"""

NEVER_IN_A_WORKER = (
    "alembic",
    "mako",
    "passgate.runtime.cli",
    "passgate.storage.migrate",
    "pydantic_settings",
    "passgate.settings_env",
)
TRACING = ("opentelemetry.sdk", "opentelemetry.exporter", "google.protobuf")
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = b'{"model":"mistral-small-latest","messages":[{"role":"user","content":"hi"}]}'


def worker_modules(tmp_path: Path, **env: str) -> dict[str, Any]:
    """The factory and ``sys.modules`` of a worker built with these env settings."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PASSGATE_", "LITELLM_", "OTEL_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "MISTRAL_API_BASE", "MISTRAL_API_KEY")
    }
    base |= {"PASSGATE_DATA_DIR": str(tmp_path), "PASSGATE_LOG_LEVEL": "warning", **env}
    # what `passgate` does before it execs the server: read the settings, hand them over
    handed = _python(HAND_OVER, base).strip()
    done = _python(WORKER, base, handed)
    result: dict[str, Any] = json.loads(done.splitlines()[-1])
    return result


def _python(code: str, env: dict[str, str], stdin: str = "") -> str:
    """What ``code`` printed, run by a fresh interpreter with ``env``."""
    return subprocess.run(
        [sys.executable, "-P", "-c", code],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def loaded(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m in packages or m.startswith(tuple(p + "." for p in packages))]


def test_a_default_worker_imports_no_migrations_tracing_or_redis(tmp_path: Path) -> None:
    worker = worker_modules(tmp_path)
    assert worker["factory"] == "passgate.runtime.worker:worker_app"
    modules = worker["modules"]
    assert "passgate.app" in modules  # the app was built
    assert loaded(modules, NEVER_IN_A_WORKER) == []
    assert loaded(modules, (*TRACING, "redis")) == []


def test_a_traced_worker_imports_the_exporter_but_no_migrations(tmp_path: Path) -> None:
    worker = worker_modules(tmp_path, PASSGATE_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert worker["factory"] == "passgate.runtime.worker_traced:worker_app"
    modules = worker["modules"]
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in modules
    assert loaded(modules, NEVER_IN_A_WORKER) == []


def test_a_worker_with_redis_imports_it(tmp_path: Path) -> None:
    # Building the app makes a client only; nothing connects to Redis yet.
    worker = worker_modules(tmp_path, REDIS_URL="redis://127.0.0.1:6379/0")
    assert "redis.asyncio" in worker["modules"]
    assert loaded(worker["modules"], NEVER_IN_A_WORKER) == []


def test_the_gateway_process_becomes_the_server_of_its_workers(
    upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway({"MISTRAL_API_BASE": upstream.url, "PASSGATE_MASTER_KEY": MASTER_KEY}, 2)
    main = psutil.Process(gw.pid)
    assert main.cmdline()[1:4] == ["-P", "-m", "passgate.runtime.server"]
    workers = [c for c in main.children() if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 2
    assert request(gw.url, "GET", "/health/readiness").status == 200


def test_the_gateway_stops_when_it_cannot_migrate() -> None:
    gw = GatewayProcess({"DATABASE_URL": "postgresql://nobody:pw-secret@127.0.0.1:1/none"})
    with pytest.raises(RuntimeError, match="passgate exited with 1") as failure:
        gw.start(timeout=20)
    gw.close()
    message = str(failure.value)
    assert "passgate: cannot migrate postgresql+asyncpg://nobody:***@127.0.0.1:1/none" in message
    assert "pw-secret" not in message and "Traceback" not in message


class _Export(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        message = ExportTraceServiceRequest()
        message.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        assert isinstance(self.server, Collector)
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attrs = {a.key: a.value.string_value for a in span.attributes}
                    self.server.spans.append((span.name, attrs))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint on loopback keeping each span's name and attributes."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Export)
        self.spans: list[tuple[str, dict[str, str]]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_two_traced_workers_export_spans(
    upstream: FakeMistral, start_gateway: GatewayFactory, collector: Collector
) -> None:
    env = {
        "MISTRAL_API_BASE": upstream.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # ms: export at once, not every 5 s
    }
    gw = start_gateway(env, 2)
    for _ in range(6):
        reply = request(gw.url, "POST", "/mistral/v1/chat/completions", CHAT, AUTH)
        assert reply.status == 200
    deadline = time.monotonic() + 10
    while len(collector.spans) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(collector.spans) == 6
    assert {name for name, _ in collector.spans} == {"chat mistral-small-latest"}
    assert all(attrs["gen_ai.system"] == "mistral_ai" for _, attrs in collector.spans)


def test_a_config_file_reaches_every_worker(
    upstream: FakeMistral, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    # One dollar per input token: a worker that missed the file would price the call at
    # the catalog's rate instead.
    config = tmp_path / "passgate.yaml"
    prices = "{input_cost_per_token: 1.0, output_cost_per_token: 0}"
    config.write_text(f"pricing:\n  mistral-small-latest: {prices}\n")
    env = {"MISTRAL_API_BASE": upstream.url, "PASSGATE_MASTER_KEY": MASTER_KEY}
    gw = start_gateway(env, 2, args=("--config", str(config)))
    costs = set()
    for _ in range(12):  # a new connection each: both workers take some
        reply = request(gw.url, "POST", "/mistral/v1/chat/completions", CHAT, AUTH)
        assert reply.status == 200
        costs.add(reply.headers["x-passgate-cost"])
    assert costs == {str(PROMPT_TOKENS)}
