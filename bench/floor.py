"""How much of a passgate call is the HTTP stack under it, and how much is passgate.

    .venv/bin/python -m bench.floor [--rounds 5] [--seconds 4]

Four gateways, each with 2 workers behind the nginx fake upstream, measured in
alternating rounds (a slow moment of the machine lands on all of them alike):

- ``echo``: uvicorn with passgate's options answering by itself (``floor_apps.echo_app``);
- ``relay``: the same uvicorn forwarding through passgate's upstream client
  (``floor_apps.relay_app``);
- ``passgate-off``: passgate with the master key, accounting off;
- ``passgate``: passgate with the master key and accounting on (its defaults).

Each round loads each gateway with wrk at 64 clients (throughput, p99, CPU of every
process of the gateway per request) and at one client (p50). Prints every run, then
the medians; the differences between the rows are what each layer costs.
"""

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.gateways import MASTER_KEY, start_nginx, start_passgate
from bench.load import Wrk
from bench.nginx import upstream_config
from bench.procs import Service, Services, ensure_tools, free_port, http_status, run_with_services

CHAT = "/mistral/v1/chat/completions"


@dataclass
class Runs:
    """One gateway's measurements over the rounds."""

    rps: list[float]
    p99: list[float]
    cpu: list[float]
    p50_one: list[float]


def start_floor(services: Services, app: str, upstream: str) -> tuple[Service, str]:
    """One of ``bench.floor_apps``' reference apps, 2 workers, in front of ``upstream``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "bench.floor_apps", app, "--port", str(port)]
    env = {"MISTRAL_API_BASE": upstream, "PYTHONPATH": str(Path(__file__).parent.parent)}
    probe = f"{url}{CHAT}"
    service = services.start(f"floor-{app}", argv, env=env, ready=lambda: _answers(probe))
    return service, url


def _answers(url: str) -> bool:
    return http_status(url) in (200, 405)


def run(args: argparse.Namespace, services: Services) -> dict[str, Runs]:
    """Measure the four gateways ``args.rounds`` times in turn."""
    tools = ensure_tools()
    port = free_port()
    start_nginx(
        services, tools["nginx"], "upstream", lambda prefix: upstream_config(prefix, port, 1)
    )
    upstream = f"http://127.0.0.1:{port}"
    wrk = Wrk(tools["wrk"], services.workdir)
    auth = f"Bearer {MASTER_KEY}"
    starters: dict[str, Callable[[], tuple[Service, str]]] = {
        "echo": lambda: start_floor(services, "echo", upstream),
        "relay": lambda: start_floor(services, "relay", upstream),
        "passgate-off": lambda: start_passgate(services, "off", upstream, accounting=False),
        "passgate": lambda: start_passgate(services, "on", upstream),
    }
    runs = {name: Runs([], [], [], []) for name in starters}
    for number in range(args.rounds):
        for name, start in starters.items():
            gateway, url = start()
            wrk.run(url + CHAT, auth, 16, 1)  # warm-up
            one = wrk.run(url + CHAT, auth, 1, max(1, args.seconds // 2))
            before = gateway.cpu_seconds()
            result = wrk.run(url + CHAT, auth, 64, args.seconds)
            used = gateway.cpu_seconds() - before
            services.stop(gateway)
            calls = result.rps * args.seconds
            per_call = 1e6 * used / calls if calls else float("nan")
            entry = runs[name]
            entry.rps.append(result.rps)
            entry.p99.append(result.p99)
            entry.cpu.append(per_call)
            entry.p50_one.append(one.p50)
            print(
                f"round {number + 1} {name:13s} c=64 {result.rps:8,.0f} req/s p99 "
                f"{result.p99:6.2f} ms {per_call:6.1f} µs CPU/req; c=1 p50 {one.p50:.3f} ms"
                + (f"; {result.errors} errors" if result.errors else ""),
                flush=True,
            )
    return runs


def summary(runs: dict[str, Runs]) -> list[str]:
    """A markdown table of the medians, each row's CPU against the row above."""
    lines = [
        "| gateway | c=64 req/s | p99 ms | CPU µs/req | + over the row above | c=1 p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    previous: float | None = None
    for name, entry in runs.items():
        cpu = statistics.median(entry.cpu)
        step = "" if previous is None else f"+{cpu - previous:.1f}"
        lines.append(
            f"| {name} | {statistics.median(entry.rps):,.0f} | "
            f"{statistics.median(entry.p99):.2f} | {cpu:.1f} | {step} | "
            f"{statistics.median(entry.p50_one):.3f} |"
        )
        previous = cpu
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print the table."""
    parser = argparse.ArgumentParser(description="passgate against its HTTP stack alone")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args(argv)
    return run_with_services("floor", lambda services: summary(run(args, services)))


if __name__ == "__main__":
    sys.exit(main())
