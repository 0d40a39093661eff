"""The passgate benchmark: direct vs nginx vs passgate (vs LiteLLM), one table per run.

    scripts/bench [--quick] [--with-litellm]      (or: .venv/bin/python -m bench.run ...)
    scripts/bench --quick --limits-only --rounds 3  (the rate-limited key rows alone)

Everything runs on 127.0.0.1: a fast fake upstream (nginx answering a fixed chat completion,
and a small Python process for SSE and uploads), the gateways under test, and the load tools
(wrk, aiohttp). Every process the run starts is stopped when it ends, even on Ctrl-C.
The table is printed and written to bench/results/latest.md.
"""

import argparse
import dataclasses
import datetime
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import psutil

from bench import targets
from bench.gateways import ROOT
from bench.procs import BenchError, Services
from bench.report import Results, table
from bench.scenario import FULL, QUICK, Plan, measure

RESULTS = ROOT / "bench" / "results" / "latest.md"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 1024**3
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.platform()}"


def _document(args: argparse.Namespace, plan: Plan, results: Results, elapsed: float) -> str:
    flags = " ".join(
        flag
        for flag, on in (
            ("--quick", args.quick),
            ("--with-litellm", args.with_litellm),
            ("--limits-only", args.limits_only),
            ("--deployments-only", args.deployments_only),
        )
        if on
    ) + (f" --rounds {args.rounds}" if args.rounds else "")
    lines = [
        f"# passgate benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `scripts/bench{' ' + flags if flags else ''}` ({elapsed:.0f} s)",
        f"- machine: {_machine()}",
        f"- Python {platform.python_version()}; wrk {plan.seconds:g} s per run; "
        f"{plan.streams} streamed chats and {plan.uploads} uploads per target",
        f"- the passgate chat rows (master key, virtual key, accounting off) ran in "
        f"{plan.rounds} alternating round(s), both gateways up; each row is the run with the "
        "median throughput, and the feature costs below are the medians of each round's ratio",
        "- gateways: 2 worker processes each; passgate with a master key and accounting on "
        "unless the row says otherwise; latency in ms as wrk measures it",
        "",
        table(results),
        "",
        "Targets (bench/targets.py):",
        "",
        *(f"- {line}" for line in targets.check(results)),
        "",
    ]
    return "\n".join(lines)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and save it."""
    parser = argparse.ArgumentParser(description="passgate benchmark (see bench/run.py)")
    parser.add_argument("--quick", action="store_true", help="short runs: under a minute")
    parser.add_argument("--with-litellm", action="store_true", help="also measure LiteLLM")
    parser.add_argument("--gap-ms", type=float, default=1.0, help="pause between SSE events")
    parser.add_argument(
        "--limits-only",
        action="store_true",
        help="only the rate-limited key rows (per-worker counters, limits process, Redis)",
    )
    parser.add_argument(
        "--deployments-only",
        action="store_true",
        help="only the rows of one deployment against three behind /mistral",
    )
    parser.add_argument("--rounds", type=int, help="alternating rounds (default: the plan's)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="passgate-bench-"))
    workdir.chmod(0o755)  # nginx workers run as another user when started by root
    services = Services(workdir)
    started = time.monotonic()
    try:
        results = measure(args, plan, services)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; stopped everything it started", file=sys.stderr)
        return 130
    finally:
        services.close()
        shutil.rmtree(workdir, ignore_errors=True)
    document = _document(args, plan, results, time.monotonic() - started)
    print()
    print(document)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(document)
    print(f"(saved to {RESULTS.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
