"""Python bytecodes a passgate worker executes per relayed call, by function and by file.

    .venv/bin/python -m bench.bytecodes [--calls 500] [--top 30] [--env KEY=VALUE ...]
                                        [--pythonpath DIR] [--virtual-key]

``bench.instructions`` says how many machine instructions a call costs; this says where
they go. It starts ``passgate --workers 1`` (access log off) behind the nginx fake upstream
under ``bench/opcount.py``, a ``sys.settrace`` opcode counter, warms it up, counts
``--calls`` chat calls made one after another, and prints the bytecodes per call: in all,
per source file and for the functions that run the most. Counts are exact and repeat from
run to run but for the timers that run by the wall clock (the tracer slows the worker about
tenfold). C code (llhttp, uvloop, orjson, the interpreter's own work between bytecodes) is
not counted: a bytecode is not a unit of time, but fewer of them on the same path is less
work, and a change shows up in the function that changed.
"""

import argparse
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from bench import worker
from bench.gateways import start_nginx
from bench.nginx import upstream_config
from bench.procs import BenchError, Services, ensure_tools, free_port, run_with_services

_OPCOUNT = Path(__file__).with_name("opcount.py")
# The directories every counted place shares (installed packages, this tree, the stdlib),
# up to the last of them in the path.
_ROOT = re.compile(r"^.*(?:/site-packages/|/src/|/lib/python3\.\d+/)")


def short(place: str) -> str:
    """A counted function's place without the directories every place shares."""
    return _ROOT.sub("", place, count=1)


def summary(counts: dict[str, int], calls: int, top: int) -> list[str]:
    """Lines of bytecodes per call: the total, each file's share and the ``top`` functions."""
    total = sum(counts.values())
    files: Counter[str] = Counter()
    for place, n in counts.items():
        files[short(place).split(":", 1)[0]] += n
    lines = [f"{total / calls:,.0f} bytecodes per call ({calls} calls)", "", "per file:"]
    lines += [f"{n / calls:9,.1f}  {name}" for name, n in files.most_common()]
    lines += ["", f"the {top} functions with the most:"]
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    lines += [f"{n / calls:9,.1f}  {short(place)}" for place, n in ranked]
    return lines


def count(
    services: Services,
    upstream: str,
    calls: int,
    env: dict[str, str],
    pythonpath: str | None,
    virtual_key: bool,
) -> dict[str, int]:
    """Bytecodes per function over ``calls`` calls to one passgate worker."""
    port = free_port()
    out = services.workdir / f"bytecodes-{port}.json"
    wrapper = [sys.executable, "-P", str(_OPCOUNT), str(out)]
    gateway, key = worker.start_warm(
        services, "bytecodes", wrapper, upstream, port, env, pythonpath, virtual_key
    )
    os.kill(gateway.proc.pid, signal.SIGUSR1)
    time.sleep(0.5)  # the handler runs at the worker's next bytecode: a timer's, at most 0.5 s
    worker.chat_calls(port, calls, key)
    os.kill(gateway.proc.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not out.exists():
        if time.monotonic() > deadline:
            raise BenchError(f"no counts from the worker:\n{gateway.log_tail()}")
        time.sleep(0.1)
    services.stop(gateway)
    counts: dict[str, int] = json.loads(out.read_text())
    return counts


def main(argv: list[str] | None = None) -> int:
    """Count one run, print the bytecodes per call."""
    parser = argparse.ArgumentParser(description="bytecodes per relayed call, by function")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--top", type=int, default=30, help="functions to list")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for passgate")
    parser.add_argument("--pythonpath", help="another source tree of passgate to measure")
    parser.add_argument(
        "--virtual-key", action="store_true", help="call with a virtual key, not the master key"
    )
    args = parser.parse_args(argv)
    env = dict(pair.split("=", 1) for pair in args.env)

    def measure(services: Services) -> list[str]:
        tools = ensure_tools()
        port = free_port()
        start_nginx(services, tools["nginx"], "upstream", lambda p: upstream_config(p, port, 1))
        upstream = f"http://127.0.0.1:{port}"
        counts = count(services, upstream, args.calls, env, args.pythonpath, args.virtual_key)
        return summary(counts, args.calls, args.top)

    return run_with_services("bytecodes", measure)


if __name__ == "__main__":
    sys.exit(main())
