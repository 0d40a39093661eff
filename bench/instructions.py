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
import re
import shutil
import sys

from bench import worker
from bench.gateways import start_nginx
from bench.nginx import upstream_config
from bench.procs import BenchError, Services, ensure_tools, free_port, run_with_services

_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


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
    wrapper = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    if spend_writer:
        wrapper.append("--trace-children=yes")
    wrapper += [sys.executable, "-P", "-m", "passgate.server"]
    gateway = worker.start(services, f"callgrind-{calls}", wrapper, upstream, port, env, pythonpath)
    key = worker.caller_key(port, virtual_key)
    worker.chat_calls(port, 20, key)  # warm-up: caches, the pool's first connection
    worker.chat_calls(port, calls, key)
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
