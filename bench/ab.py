"""Compare passgate configurations in alternating rounds: what one setting costs.

    .venv/bin/python -m bench.ab off:PASSGATE_ACCOUNTING=false on: [--rounds 5] [-c 64]

Each argument is ``NAME:KEY=VALUE,KEY=VALUE`` (environment for that passgate; ``W=N``
sets its worker count, default 2). Every round starts each variant in turn behind the
nginx fake upstream, warms it up, loads it with wrk for ``--seconds`` and stops it; the
CPU of all its processes (workers, spend writer) is read before and after. Prints each
run, then per variant the median throughput, its change against the first variant, and
the median CPU per request. On a machine whose speed drifts (shared hosts), alternating
lands a slow moment on every variant alike; single runs compared across minutes do not.
"""

import argparse
import statistics
import sys
from dataclasses import dataclass

from bench.gateways import MASTER_KEY, start_nginx, start_passgate
from bench.load import Wrk
from bench.nginx import upstream_config
from bench.procs import Services, ensure_tools, free_port, run_with_services

CHAT = "/mistral/v1/chat/completions"


@dataclass(frozen=True)
class Variant:
    """One configuration: its name, its environment and its worker count."""

    name: str
    env: dict[str, str]
    workers: int


def parse_variant(text: str) -> Variant:
    """``NAME:KEY=VALUE,...`` as a Variant (``W=N`` is the worker count)."""
    name, _, pairs = text.partition(":")
    env = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    workers = int(env.pop("W", "2"))
    return Variant(name or text, env, workers)


def run(args: argparse.Namespace, variants: list[Variant], services: Services) -> list[str]:
    """Measure every variant ``args.rounds`` times in turn; the summary lines."""
    tools = ensure_tools()
    port = free_port()
    start_nginx(
        services, tools["nginx"], "upstream", lambda prefix: upstream_config(prefix, port, 1)
    )
    wrk = Wrk(tools["wrk"], services.workdir)
    auth = f"Bearer {MASTER_KEY}"
    rps: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    for number in range(args.rounds):
        for variant in variants:
            gateway, url = start_passgate(
                services,
                "gateway",
                f"http://127.0.0.1:{port}",
                workers=variant.workers,
                extra_env=variant.env,
            )
            wrk.run(url + CHAT, auth, 16, 1)  # warm-up
            before = gateway.cpu_by_role()
            result = wrk.run(url + CHAT, auth, args.concurrency, args.seconds)
            after = gateway.cpu_by_role()
            services.stop(gateway)
            calls = result.rps * args.seconds
            per_call = {
                role: 1e6 * (seconds - before.get(role, 0.0)) / calls if calls else float("nan")
                for role, seconds in after.items()
            }
            rps[variant.name].append(result.rps)
            cpu[variant.name].append(sum(per_call.values()))
            split = ", ".join(f"{role} {value:.1f}" for role, value in sorted(per_call.items()))
            print(
                f"round {number + 1} {variant.name:16s} {result.rps:9,.0f} req/s  "
                f"p99 {result.p99:6.1f} ms  {cpu[variant.name][-1]:6.1f} µs CPU per request"
                f" ({split})",
                flush=True,
            )
    first = statistics.median(rps[variants[0].name])
    lines = []
    for variant in variants:
        median = statistics.median(rps[variant.name])
        lines.append(
            f"{variant.name:16s} median {median:9,.0f} req/s ({100 * (median / first - 1):+.1f}%"
            f" vs {variants[0].name}), {statistics.median(cpu[variant.name]):.1f} µs CPU"
            " per request"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse the variants, run the rounds, print the summary."""
    parser = argparse.ArgumentParser(description="passgate variants in alternating rounds")
    parser.add_argument("variants", nargs="+", help="NAME:KEY=VALUE,... (W=N: workers)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    variants = [parse_variant(text) for text in args.variants]
    return run_with_services("ab", lambda services: run(args, variants, services))


if __name__ == "__main__":
    sys.exit(main())
