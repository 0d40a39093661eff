"""passgate's server under an opcode counter that two signals switch (for ``bench.bytecodes``).

    python -P bench/opcount.py OUT.json <passgate.runtime.server arguments>

SIGUSR1 clears the counts and starts counting the main thread's bytecodes; SIGUSR2 stops and
writes ``{"file:first line function": bytecodes}`` as JSON to ``OUT.json``. Run by path (not
``-m``) so that it needs nothing but the standard library and the passgate it runs.
"""

import json
import runpy
import signal
import sys
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType
from typing import Any


def main() -> None:
    """Install the two signal handlers, then run ``passgate.runtime.server`` with the other
    arguments."""
    out = Path(sys.argv[1])
    counts: Counter[CodeType] = Counter()
    counting = [False]

    def opcode(frame: FrameType, event: str, _arg: Any) -> Any:
        if event == "opcode" and counting[0]:
            counts[frame.f_code] += 1
        return opcode

    def call(frame: FrameType, _event: str, _arg: Any) -> Any:
        frame.f_trace_lines = False
        frame.f_trace_opcodes = True
        return opcode

    def start(_signum: int, _frame: FrameType | None) -> None:
        counts.clear()
        counting[0] = True
        sys.settrace(call)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        counting[0] = False
        sys.settrace(None)
        by_function: Counter[str] = Counter()
        for code, n in counts.items():
            by_function[f"{code.co_filename}:{code.co_firstlineno} {code.co_qualname}"] += n
        # written whole, then renamed: the driver reads the file as soon as it exists
        partial = out.with_name(out.name + ".partial")
        partial.write_text(json.dumps(by_function))
        partial.replace(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["passgate.runtime.server", *sys.argv[2:]]
    runpy.run_module("passgate.runtime.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
