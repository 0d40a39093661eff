"""No process of a running passgate holds the master or the provider key in its environment.

``passgate`` is started the usual way, with both keys in its environment; the server it
becomes, its workers (a restarted one too) and its spend writer must keep neither in
``/proc/PID/environ`` nor on their command lines, and still use both.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.http import request

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = b'{"model":"mistral-small-latest","messages":[{"role":"user","content":"hi"}]}'
SECRETS = (MASTER_KEY.encode(), PROVIDER_KEY.encode())


def _processes(gateway: GatewayProcess) -> dict[str, list[psutil.Process]]:
    """The server and every child: workers, spend writer, limits process, other helpers."""
    found: dict[str, list[psutil.Process]] = {"server": [psutil.Process(gateway.pid)]}
    for child in psutil.Process(gateway.pid).children():
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue  # exited, not yet reaped
        if "passgate.runtime.spend_process" in command:
            kind = "spend writer"
        elif "passgate.runtime.limits_process" in command:
            kind = "limits process"
        elif "spawn_main" in command:
            kind = "worker"
        else:
            kind = command  # such as multiprocessing's resource tracker
        found.setdefault(kind, []).append(child)
    return found


def _assert_no_secret_in(processes: dict[str, list[psutil.Process]]) -> None:
    for kind, members in processes.items():
        for process in members:
            environ = Path(f"/proc/{process.pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
            # booleans first: a failure must not print the environment
            in_environ = any(secret in environ for secret in SECRETS)
            in_cmdline = any(secret in cmdline for secret in SECRETS)
            assert not in_environ, f"a key is in the environment of the {kind}"
            assert not in_cmdline, f"a key is on the command line of the {kind}"


def _call_uses_the_provider_key(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    reply = request(gateway.url, "POST", "/mistral/v1/chat/completions", CHAT, AUTH)
    assert reply.status == 200
    assert ("authorization", f"Bearer {PROVIDER_KEY}") in upstream.last.headers
    assert request(gateway.url, "GET", "/key/list", headers=AUTH).status == 200  # master key


def test_no_process_keeps_a_key_in_its_environment(
    upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    env = {
        "MISTRAL_API_BASE": upstream.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
    }
    gateway = start_gateway(env, 2)
    processes = _processes(gateway)
    assert len(processes["worker"]) == 2 and len(processes["spend writer"]) == 1
    _assert_no_secret_in(processes)
    for _ in range(4):  # each on a new connection: both workers answer some
        _call_uses_the_provider_key(gateway, upstream)

    # A worker uvicorn restarts is handed the settings again, still not in its environment.
    victim = processes["worker"][0]
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _processes(gateway).get("worker", [])
        if len(workers) == 2 and victim.pid not in {worker.pid for worker in workers}:
            break
        time.sleep(0.1)
    else:
        pytest.fail("uvicorn did not replace the killed worker")
    _assert_no_secret_in(_processes(gateway))
    for _ in range(4):
        _call_uses_the_provider_key(gateway, upstream)


def test_a_key_the_config_file_names_by_variable_stays_out_of_every_environment(
    upstream: FakeMistral, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    config = tmp_path / "passgate.yaml"
    config.write_text(
        "master_key: os.environ/PROD_MASTER\n"
        "providers:\n"
        f"  mistral: {{api_base: {upstream.url}, api_key: os.environ/PROD_PROVIDER_KEY}}\n",
        encoding="utf-8",
    )
    env = {"PROD_PROVIDER_KEY": PROVIDER_KEY, "PROD_MASTER": MASTER_KEY}
    gateway = start_gateway(env, 1, args=("--config", str(config)))
    _assert_no_secret_in(_processes(gateway))
    _call_uses_the_provider_key(gateway, upstream)
