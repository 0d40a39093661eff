"""Instructions a passgate worker executes per relayed call, counted by callgrind.

    .venv/bin/python -m bench.instructions [--calls 300 1300] [--env KEY=VALUE ...]
                                           [--pythonpath DIR]

On this project's shared 2-core machines the same configuration's throughput moves by
±20% from one round to the next, so a change worth 5% cannot be seen in seconds of wrk.
Instruction counts hardly move: this starts ``passgate --workers 1`` (the worker is the
server process itself; access log off, key-change poll at its longest interval) under
``valgrind --tool=callgrind`` behind the nginx fake upstream, sends each number of
``--calls`` one after another on one keep-alive connection, and stops it. The difference
between two runs' totals, divided by the difference in calls, is the instructions of one
call with start-up and shutdown taken out. ``--pythonpath`` runs another tree of the
package (a ``git worktree`` of an older commit) to compare two versions. The
spend-writer process is not counted: this measures a worker.
"""

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys

from bench.gateways import MASTER_KEY, generate_key, start_nginx
from bench.nginx import upstream_config
from bench.payloads import CHAT_REQUEST
from bench.procs import (
    BenchError,
    Services,
    ensure_tools,
    free_port,
    http_status,
    run_with_services,
)
from passgate.config import WORKER_SETTINGS_ENV

CHAT = "/mistral/v1/chat/completions"
# What ``passgate`` does before it becomes the server: the schema at head, and the
# settings handed over to the server (printed here, put in its environment by ``count``).
_HAND_OVER = (
    "from passgate.cli import migrate; from passgate.config import settings_json; "
    "from passgate.settings_env import load_settings; settings = load_settings(); "
    "code = migrate(settings); print(settings_json(settings)); raise SystemExit(code)"
)
_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def _calls(port: int, count: int, key: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for _ in range(count):
        connection.request("POST", CHAT, body=CHAT_REQUEST, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise BenchError(f"passgate answered {response.status}")
    connection.close()


def count(
    services: Services,
    upstream: str,
    calls: int,
    env: dict[str, str],
    pythonpath: str | None,
    spend_writer: bool = False,
    virtual_key: bool = False,
) -> int:
    """Instructions of one passgate worker's whole life, serving ``calls`` calls (and of its
    spend-writer process's with ``spend_writer``), called with the master key or, with
    ``virtual_key``, a key from ``POST /key/generate``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise BenchError("valgrind is not installed (apt-get install -y valgrind)")
    port = free_port()
    # %p: with --trace-children each traced process writes its own file.
    out = services.workdir / f"callgrind-{calls}-{port}"
    argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    if spend_writer:
        argv.append("--trace-children=yes")
    argv += [sys.executable, "-P", "-m", "passgate.server", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1"]
    full_env = {
        "MISTRAL_API_BASE": upstream,
        "MISTRAL_API_KEY": "x",
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_DATA_DIR": str(services.workdir / f"data-{port}"),
        "PASSGATE_LOG_REQUESTS": "false",
        # The key-change poll runs by the wall clock, which valgrind slows: at its longest
        # interval it adds the fewest instructions that depend on how long a run took.
        "PASSGATE_KEY_CHANGE_POLL_INTERVAL": "5",
        **env,
    }
    if pythonpath:
        full_env["PYTHONPATH"] = pythonpath
    url = f"http://127.0.0.1:{port}/health/readiness"
    handed = subprocess.run(
        [sys.executable, "-P", "-c", _HAND_OVER],
        env={**os.environ, **full_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if handed.returncode != 0:
        raise BenchError(f"passgate could not start: {handed.stderr}")
    full_env[WORKER_SETTINGS_ENV] = handed.stdout.strip().splitlines()[-1]
    gateway = services.start(
        f"callgrind-{calls}", argv, env=full_env, ready=lambda: http_status(url) == 200, timeout=300
    )
    key = MASTER_KEY
    if virtual_key:
        generated, why = generate_key(f"http://127.0.0.1:{port}")
        if generated is None:
            raise BenchError(f"no virtual key: {why}")
        key = generated
    _calls(port, 20, key)  # warm-up: caches, the pool's first connection
    _calls(port, calls, key)
    services.stop(gateway)
    totals = [
        _TOTALS.search(f.read_text(errors="replace")) for f in out.parent.glob(out.name + ".*")
    ]
    expected = 2 if spend_writer else 1
    if len(totals) != expected or not all(totals):
        raise BenchError(f"{len(totals)} callgrind outputs for {out}:\n{gateway.log_tail()}")
    return sum(int(match.group(1)) for match in totals if match)


def main(argv: list[str] | None = None) -> int:
    """Count two runs, print the instructions per call."""
    parser = argparse.ArgumentParser(description="instructions per relayed call (callgrind)")
    parser.add_argument("--calls", type=int, nargs=2, default=[300, 1300])
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for passgate")
    parser.add_argument("--pythonpath", help="another source tree of passgate to measure")
    parser.add_argument(
        "--spend-writer", action="store_true", help="count the spend-writer process's too"
    )
    parser.add_argument(
        "--virtual-key", action="store_true", help="call with a virtual key, not the master key"
    )
    args = parser.parse_args(argv)
    env = dict(pair.split("=", 1) for pair in args.env)
    low, high = args.calls

    def measure(services: Services) -> list[str]:
        tools = ensure_tools()
        port = free_port()
        start_nginx(services, tools["nginx"], "upstream", lambda p: upstream_config(p, port, 1))
        upstream = f"http://127.0.0.1:{port}"
        totals = {
            n: count(
                services, upstream, n, env, args.pythonpath, args.spend_writer, args.virtual_key
            )
            for n in (low, high)
        }
        per_call = (totals[high] - totals[low]) / (high - low)
        return [
            f"{low} calls: {totals[low]:,} instructions; {high} calls: {totals[high]:,}",
            f"per call: {per_call:,.0f} instructions (env {env or 'defaults'}"
            + (", worker and spend writer)" if args.spend_writer else ", worker)"),
        ]

    return run_with_services("instructions", measure)


if __name__ == "__main__":
    sys.exit(main())
