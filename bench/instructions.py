"""Instructions a passgate worker executes per relayed call, counted by callgrind.

    .venv/bin/python -m bench.instructions [--calls 300 1300] [--env KEY=VALUE ...]
                                           [--pythonpath DIR] [--against DIR] [--rounds N]

(``{upstream}`` in an ``--env`` value is the fake upstream's URL: three deployments behind
/mistral are ``--env 'PASSGATE_PROVIDERS={"mistral": {"deployments": [{"name": "a",
"api_base": "{upstream}", "api_key": "x"}, ...]}}'``.)

On this project's shared 2-core machines the same configuration's throughput moves by
±20% from one round to the next, so a change worth 5% cannot be seen in seconds of wrk.
Instruction counts hardly move: this starts ``passgate --workers 1`` (the worker is the
server process itself; access log off, key-change poll at its longest interval) under
``valgrind --tool=callgrind`` behind the nginx fake upstream, sends each number of
``--calls`` one after another on one keep-alive connection, and stops it. The difference
between two runs' totals, divided by the difference in calls, is the instructions of one
call with start-up and shutdown taken out. ``--pythonpath`` runs another tree of the
package (a ``git worktree`` of an older commit); ``--against`` names a second tree, and the
two are counted in turns, one count at a time, ``--rounds`` times each, with the medians and
the change printed: counts still spread by up to ~3% between runs of one build, so an A/B
of a few percent wants three rounds. The spend-writer process is counted only with
``--spend-writer``: this measures a worker.
"""

import argparse
import re
import shutil
import statistics
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
    wrapper += [sys.executable, "-P", "-m", "passgate.runtime.server"]
    gateway, key = worker.start_warm(
        services, f"callgrind-{calls}", wrapper, upstream, port, env, pythonpath, virtual_key
    )
    worker.chat_calls(port, calls, key)
    services.stop(gateway)
    totals = [
        _TOTALS.search(f.read_text(errors="replace")) for f in out.parent.glob(out.name + ".*")
    ]
    expected = 2 if spend_writer else 1
    if len(totals) != expected or not all(totals):
        raise BenchError(f"{len(totals)} callgrind outputs for {out}:\n{gateway.log_tail()}")
    return sum(int(match.group(1)) for match in totals if match)


def summary(per_call: dict[str, list[float]]) -> list[str]:
    """Per tree the median instructions per call and the spread of its counts; with two
    trees, the change of the second against the first."""
    lines = []
    medians = {}
    for tree, counts in per_call.items():
        medians[tree] = median = statistics.median(counts)
        spread = 100 * (max(counts) - min(counts)) / median
        runs = ", ".join(f"{count:,.0f}" for count in counts)
        lines.append(f"{tree}: median {median:,.0f} per call ({runs}; spread {spread:.1f}%)")
    if len(medians) == 2:
        (first, before), (second, after) = medians.items()
        lines.append(f"{second} against {first}: {100 * (after / before - 1):+.1f}%")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Count two runs per tree (in turns, one at a time), print the instructions per call."""
    parser = argparse.ArgumentParser(description="instructions per relayed call (callgrind)")
    parser.add_argument("--calls", type=int, nargs=2, default=[300, 1300])
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for passgate")
    parser.add_argument("--pythonpath", help="another source tree of passgate to measure")
    parser.add_argument(
        "--against", help="a second source tree, counted in turns with the first: the change"
    )
    parser.add_argument("--rounds", type=int, default=1, help="counts of each tree, in turns")
    parser.add_argument(
        "--spend-writer", action="store_true", help="count the spend-writer process's too"
    )
    parser.add_argument(
        "--virtual-key", action="store_true", help="call with a virtual key, not the master key"
    )
    args = parser.parse_args(argv)
    env = dict(pair.split("=", 1) for pair in args.env)
    low, high = args.calls
    trees = {args.pythonpath or "this tree": args.pythonpath}
    if args.against:
        trees[args.against] = args.against

    def measure(services: Services) -> list[str]:
        tools = ensure_tools()
        port = free_port()
        start_nginx(services, tools["nginx"], "upstream", lambda p: upstream_config(p, port, 1))
        upstream = f"http://127.0.0.1:{port}"
        # "{upstream}" in a value is the fake upstream's URL (deployments in PASSGATE_PROVIDERS)
        env_here = {key: value.replace("{upstream}", upstream) for key, value in env.items()}
        per_call: dict[str, list[float]] = {name: [] for name in trees}
        lines: list[str] = []
        # One count at a time: two valgrind runs sharing the machine each count 3-4% more
        # (the spend link's linger and the key-change poll run by the clock).
        for number in range(args.rounds):
            for name, tree in trees.items():
                totals = {
                    n: count(
                        services, upstream, n, env_here, tree, args.spend_writer, args.virtual_key
                    )
                    for n in (low, high)
                }
                per_call[name].append((totals[high] - totals[low]) / (high - low))
                lines.append(
                    f"round {number + 1}, {name}: {low} calls {totals[low]:,} instructions,"
                    f" {high} calls {totals[high]:,}: {per_call[name][-1]:,.0f} per call"
                )
                print(lines[-1], flush=True)
        what = "worker and spend writer" if args.spend_writer else "worker"
        return [f"instructions per call ({what}, env {env or 'defaults'}):", *summary(per_call)]

    return run_with_services("instructions", measure)


if __name__ == "__main__":
    sys.exit(main())
