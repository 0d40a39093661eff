"""One passgate worker started for counting: the settings hand-over ``passgate`` does, then
``passgate.runtime.server --workers 1`` (the worker is the server process itself) under a
wrapper."""

import http.client
import os
import subprocess
import sys
import tempfile

from bench.gateways import MASTER_KEY, generate_key
from bench.payloads import CHAT_REQUEST
from bench.procs import BenchError, Service, Services, http_status

CHAT = "/mistral/v1/chat/completions"
# What ``passgate`` does before it becomes the server: the schema at head, and the
# settings handed over to the server (printed here, handed to it by ``start`` in an unnamed
# file it inherits, as ``passgate`` does).
_HAND_OVER = (
    "from passgate.runtime.cli import migrate; from passgate.config import settings_json; "
    "from passgate.settings_env import load_settings; settings = load_settings(); "
    "code = migrate(settings); print(settings_json(settings)); raise SystemExit(code)"
)


def start(
    services: Services,
    name: str,
    wrapper: list[str],
    upstream: str,
    port: int,
    env: dict[str, str],
    pythonpath: str | None,
) -> Service:
    """``passgate.runtime.server`` on ``port`` with one worker, run by ``wrapper`` (a command that
    ends where the Python arguments go), access log off and the key-change poll at its longest."""
    argv = [*wrapper, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    full_env = {
        "MISTRAL_API_BASE": upstream,
        "MISTRAL_API_KEY": "x",
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_DATA_DIR": str(services.workdir / f"data-{port}"),
        "PASSGATE_LOG_REQUESTS": "false",
        # The key-change poll runs by the wall clock, which a counting run slows: at its
        # longest interval it adds the fewest counts that depend on how long a run took.
        "PASSGATE_KEY_CHANGE_POLL_INTERVAL": "5",
        **env,
    }
    if pythonpath:
        full_env["PYTHONPATH"] = pythonpath
    handed = subprocess.run(
        [sys.executable, "-P", "-c", _HAND_OVER],
        env={**os.environ, **full_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if handed.returncode != 0:
        raise BenchError(f"passgate could not start: {handed.stderr}")
    with tempfile.TemporaryFile() as settings:
        settings.write(handed.stdout.strip().splitlines()[-1].encode())
        settings.flush()
        settings.seek(0)
        argv += ["--settings-fd", str(settings.fileno())]
        url = f"http://127.0.0.1:{port}/health/readiness"
        return services.start(
            name,
            argv,
            env=full_env,
            ready=lambda: http_status(url) == 200,
            timeout=300,
            pass_fds=(settings.fileno(),),
        )


def start_warm(
    services: Services,
    name: str,
    wrapper: list[str],
    upstream: str,
    port: int,
    env: dict[str, str],
    pythonpath: str | None,
    virtual_key: bool,
) -> tuple[Service, str]:
    """``start``, then 20 calls to warm it up (caches, the pool's first connection); the
    worker and the key to call it with (``caller_key``)."""
    gateway = start(services, name, wrapper, upstream, port, env, pythonpath)
    key = caller_key(port, virtual_key)
    chat_calls(port, 20, key)
    return gateway, key


def caller_key(port: int, virtual_key: bool) -> str:
    """The master key, or with ``virtual_key`` a key from ``POST /key/generate``."""
    if not virtual_key:
        return MASTER_KEY
    generated, why = generate_key(f"http://127.0.0.1:{port}")
    if generated is None:
        raise BenchError(f"no virtual key: {why}")
    return generated


def chat_calls(port: int, count: int, key: str) -> None:
    """``count`` chat calls one after another on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for _ in range(count):
        connection.request("POST", CHAT, body=CHAT_REQUEST, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise BenchError(f"passgate answered {response.status}")
    connection.close()
