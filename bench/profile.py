"""Profile passgate's hot path: one worker under wrk load, sampled by py-spy.

    .venv/bin/python -m bench.profile [--concurrency 64] [--seconds 8] [--env KEY=VALUE ...]

Starts the nginx fake upstream and `passgate --workers 1` (master key, accounting on unless
an --env says otherwise), loads it with wrk and meanwhile samples it with py-spy (installed
in .venv by the dev dependencies; without it only the CPU split is printed). Prints the CPU
each thread used per request, then per thread the share of samples by part of the gateway,
and the main thread's top functions by self and inclusive samples. docs/performance.md says
what its output shows.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from bench import pyspy
from bench.gateways import MASTER_KEY, start_nginx, start_passgate
from bench.load import Wrk
from bench.nginx import upstream_config
from bench.procs import BenchError, Service, Services, ensure_tools, free_port

PY_SPY = Path(sys.executable).with_name("py-spy")
CHAT = "/mistral/v1/chat/completions"


def _thread_cpu(service: Service) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of the gateway process."""
    try:
        threads = psutil.Process(service.proc.pid).threads()
    except psutil.Error:
        return {}
    return {thread.id: thread.user_time + thread.system_time for thread in threads}


def _sample(pid: int, seconds: int, rate: int, output: Path) -> subprocess.Popen[bytes] | None:
    if not PY_SPY.exists():
        return None
    argv = [str(PY_SPY), "record", "-p", str(pid), "-d", str(seconds), "-r", str(rate)]
    argv += ["-f", "raw", "-o", str(output), "--nonblocking", "--threads", "--function"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _top(counter: dict[str, int], total: int, count: int) -> list[str]:
    ranked = sorted(counter.items(), key=lambda item: -item[1])[:count]
    return [f"| {100 * samples / total:5.1f}% | `{name}` |" for name, samples in ranked]


def _report(profiles: dict[str, pyspy.Profile], top: int) -> list[str]:
    lines: list[str] = []
    for label, profile in sorted(profiles.items(), key=lambda item: -item[1].samples):
        total = profile.samples
        lines += ["", f"### {label}: {total} samples", "", "| share | part |", "|---|---|"]
        lines += _top(dict(profile.categories), total, len(pyspy.CATEGORIES) + 1)
        if label.startswith("MainThread"):
            for title, counter in (("self", profile.self_time), ("inclusive", profile.inclusive)):
                lines += ["", f"Top {top} by {title} samples:", "", "| share | function |"]
                lines += ["|---|---|", *_top(dict(counter), total, top)]
    return lines


def run(args: argparse.Namespace, services: Services) -> list[str]:
    """Start everything, load and sample, and return the report's lines."""
    tools = ensure_tools()
    port = free_port()
    start_nginx(
        services, tools["nginx"], "upstream", lambda prefix: upstream_config(prefix, port, 1)
    )
    upstream = f"http://127.0.0.1:{port}"
    # "{upstream}" in a value is the fake upstream's URL (deployments in PASSGATE_PROVIDERS)
    env = {
        key: value.replace("{upstream}", upstream)
        for key, value in (item.split("=", 1) for item in args.env)
    }
    gateway, url = start_passgate(
        services, "gateway", f"http://127.0.0.1:{port}", workers=1, extra_env=env
    )
    wrk = Wrk(tools["wrk"], services.workdir)
    auth = f"Bearer {MASTER_KEY}"
    wrk.run(url + CHAT, auth, 16, 2)  # warm-up
    raw = services.workdir / "py-spy.txt"
    before = _thread_cpu(gateway)
    sampler = _sample(gateway.proc.pid, max(1, args.seconds - 2), args.rate, raw)
    result = wrk.run(url + CHAT, auth, args.concurrency, args.seconds)
    requests = result.rps * args.seconds
    after = _thread_cpu(gateway)
    if sampler is not None:
        sampler.wait(timeout=60)
    profiles = pyspy.read(raw) if sampler is not None and raw.exists() else {}
    names = {label.rsplit("(", 1)[1].rstrip(")"): label for label in profiles}
    lines = [
        f"wrk c={args.concurrency}, {args.seconds} s, 1 worker, env {env or 'defaults'}: "
        f"{result.rps:,.0f} req/s, p50 {result.p50:.3f} ms, p99 {result.p99:.3f} ms",
        "",
        "| thread | CPU per request |",
        "|---|---|",
    ]
    used = {tid: seconds - before.get(tid, 0.0) for tid, seconds in after.items()}
    for tid, seconds in sorted(used.items(), key=lambda item: -item[1]):
        if seconds > 0:
            lines.append(f"| {names.get(str(tid), tid)} | {1e6 * seconds / requests:.1f} µs |")
    if not profiles:
        return [*lines, "", f"(no py-spy profile: {PY_SPY} not found or it failed)"]
    return lines + _report(profiles, args.top)


def main(argv: list[str] | None = None) -> int:
    """Run one profile and print it."""
    parser = argparse.ArgumentParser(description="profile passgate under load (bench/profile.py)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="functions listed per ranking")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for passgate")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="passgate-profile-"))
    workdir.chmod(0o755)  # nginx workers run as another user when started by root
    services = Services(workdir)
    try:
        lines = run(args, services)
    except BenchError as error:
        print(f"bench.profile: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        services.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
